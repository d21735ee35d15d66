"""Who may still get each kind of email: the rule the sending claim applies to every
email as it goes out (drip.sending), and by which the admin is offered "Send again"
only for an email that would go (drip.subscriber_actions)."""

from __future__ import annotations

from drip.models import DeliveryKind, SubscriberStatus
from drip.privacy import BLOCKING

ALLOWED = {
    DeliveryKind.CONFIRMATION: {SubscriberStatus.PENDING},
    DeliveryKind.STEP: {SubscriberStatus.ACTIVE},
}
"""Who may still get each kind of email; a privacy link goes to anyone on file."""


def refusal(kind: DeliveryKind, status: SubscriberStatus, suppressed: str | None) -> str:
    """Why this email must not go out now, or "" when it may."""
    if kind in ALLOWED and status not in ALLOWED[kind]:
        return f"subscriber is {status.value}"
    if suppressed in BLOCKING or (suppressed and kind == DeliveryKind.STEP):
        return f"address is suppressed ({suppressed})"
    return ""
