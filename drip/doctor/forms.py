"""The check of the forms writers pasted into their sites: do they still show the
consent notice drip gives now (drip.notices)?"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from drip import notices
from drip.db import create_db_engine
from drip.db_problems import reason
from drip.doctor.report import Check, Level
from drip.settings import Settings

NAME = "embedded forms"


def embedded_forms(settings: Settings, *, now: datetime) -> Check:
    """Signups of the last 30 days from embedded forms showing another notice than
    drip's current one, or not saying which, by site: a warning, since those signups
    are kept with the notice their form showed, but the form must be pasted again.
    Changes nothing."""
    days = notices.RECENT.days
    engine = create_db_engine(settings.database_url)
    try:
        with Session(engine) as session:
            stale = notices.out_of_date(session, settings, since=now - notices.RECENT)
    except DBAPIError as exc:
        return unchecked(reason(exc))
    finally:
        engine.dispose()
    if not stale:
        return Check(
            NAME,
            Level.OK,
            f"no signup of the last {days} days came from a form showing an older notice",
        )
    where = "; ".join(
        f"{found.site} ({found.signups}, the latest on {found.latest:%Y-%m-%d})" for found in stale
    )
    return Check(
        NAME,
        Level.WARNING,
        f"{sum(found.signups for found in stale)} signup(s) of the last {days} days came "
        f"from a form showing an older consent notice, or not saying which: {where}",
        f"paste the snippet from {settings.base_url}/embed (or /s/SLUG/embed) again on "
        "those sites: a form shows the notice of the day it was pasted, which names "
        "DRIP_FROM, DRIP_POSTAL_ADDRESS, DRIP_PRIVACY_CONTACT and the series",
    )


def unchecked(why: str) -> Check:
    return Check(NAME, Level.WARNING, f"not checked: {why}")
