"""Enumerations stored as strings with CHECK constraints."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    END_USER = "END_USER"
    SUPPORT_AGENT = "SUPPORT_AGENT"
    MANAGER = "MANAGER"
    ADMINISTRATOR = "ADMINISTRATOR"


STAFF_ROLES = frozenset({Role.SUPPORT_AGENT, Role.MANAGER, Role.ADMINISTRATOR})
PRIVILEGED_ROLES = frozenset({Role.MANAGER, Role.ADMINISTRATOR})


class TicketStatus(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


class Priority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class TokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


class ScanStatus(StrEnum):
    PENDING = "PENDING"
    CLEAN = "CLEAN"
    INFECTED = "INFECTED"


def check_in(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"
