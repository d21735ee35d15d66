"""The data model: one module per noun, re-exported here."""

from drip.models.admin import Admin, AdminSession
from drip.models.base import Base
from drip.models.confirmation_mail import ConfirmationMail
from drip.models.consent import (
    ConsentEvent,
    ConsentEventKind,
    ConsentMethod,
    ConsentText,
    ErasureMark,
)
from drip.models.delivery import Delivery, DeliveryKind, DeliveryStatus
from drip.models.domain_pause import DomainPause
from drip.models.received_signup import ReceivedSignup
from drip.models.retired_counts import RetiredCounts, RetiredReason
from drip.models.sending_hold import SendingHold
from drip.models.sequence import Sequence, Step, TemplateVersion
from drip.models.stats_snapshot import StatsSnapshot
from drip.models.subscriber import Subscriber, SubscriberStatus
from drip.models.suppression import Suppression

__all__ = [
    "Admin",
    "AdminSession",
    "Base",
    "ConfirmationMail",
    "ConsentEvent",
    "ConsentEventKind",
    "ConsentMethod",
    "ConsentText",
    "Delivery",
    "DeliveryKind",
    "DeliveryStatus",
    "DomainPause",
    "ErasureMark",
    "ReceivedSignup",
    "RetiredCounts",
    "RetiredReason",
    "SendingHold",
    "Sequence",
    "StatsSnapshot",
    "Step",
    "Subscriber",
    "SubscriberStatus",
    "Suppression",
    "TemplateVersion",
]
