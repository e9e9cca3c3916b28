"""Temporal UI codec: MFA-verified managers and administrators only."""

_PRIVILEGED = {
    "anonymous": "deny",
    "END_USER": "deny",
    "SUPPORT_AGENT": "deny",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/v1/temporal-codec/encode"): dict(_PRIVILEGED),
    ("POST", "/api/v1/temporal-codec/decode"): dict(_PRIVILEGED),
}
