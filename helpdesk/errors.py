"""Domain errors. They know nothing of HTTP; `api.errors` maps each to a status code.

Messages are safe to show to the caller and never carry PHI.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the services raise on purpose."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        audit: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        # Keyword arguments for AuditTrail.record: the API writes them in a transaction of
        # their own, since the request's transaction rolls back with the error.
        self.audit = audit


class NotFound(DomainError):
    code = "not_found"


class Gone(DomainError):
    code = "gone"


class Conflict(DomainError):
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class PermissionDenied(DomainError):
    code = "permission_denied"


class AuthenticationFailed(DomainError):
    code = "authentication_failed"


class MfaRequired(PermissionDenied):
    code = "mfa_required"


class EmailUnverified(PermissionDenied):
    """The account has not confirmed its email address: it may only verify or ask for a
    new link."""

    code = "email_unverified"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int,
        details: dict[str, Any] | None = None,
        audit: dict[str, Any] | None = None,
    ):
        super().__init__(message, details=details, audit=audit)
        self.retry_after = max(1, int(retry_after))


class ValidationFailed(DomainError):
    code = "validation_failed"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class Unavailable(DomainError):
    """A dependency (Temporal, the scanner) cannot answer now; retry later."""

    code = "unavailable"

    def __init__(
        self, message: str, *, retry_after: int = 2, details: dict[str, Any] | None = None
    ):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class DataIntegrityError(DomainError):
    """Stored ciphertext failed authentication: never show garbled data."""

    code = "integrity_error"
