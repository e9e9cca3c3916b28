"""ORM models (the database shape); API schemas live in `api.schemas`."""

from models.analytics import AnalyticsRollup, TicketFact
from models.attachment import Attachment
from models.audit import AuditLog
from models.base import Base
from models.category import Category
from models.comment import Comment
from models.enums import Priority, Role, ScanStatus, TicketStatus, TokenPurpose
from models.keys import DataKey
from models.satisfaction import SatisfactionSurvey
from models.sla import BusinessCalendar, EscalationRule, SlaPolicy
from models.ticket import (
    Counter,
    IdempotencyRecord,
    NotificationLog,
    Ticket,
    TicketHistory,
    TicketSearchToken,
    TicketTag,
)
from models.user import AuthSession, OneTimeToken, RefreshToken, User

__all__ = [
    "AnalyticsRollup",
    "Attachment",
    "AuditLog",
    "AuthSession",
    "Base",
    "BusinessCalendar",
    "Category",
    "Comment",
    "Counter",
    "DataKey",
    "EscalationRule",
    "IdempotencyRecord",
    "NotificationLog",
    "OneTimeToken",
    "Priority",
    "RefreshToken",
    "Role",
    "SatisfactionSurvey",
    "ScanStatus",
    "SlaPolicy",
    "Ticket",
    "TicketFact",
    "TicketHistory",
    "TicketSearchToken",
    "TicketStatus",
    "TicketTag",
    "TokenPurpose",
    "User",
]
