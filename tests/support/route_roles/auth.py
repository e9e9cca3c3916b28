"""/api/v1/auth: the credential routes are public (and rate-limited); logout and MFA
enrolment need a signed-in user of any role."""

_PUBLIC = {
    "anonymous": "allow",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}
_SIGNED_IN = {
    "anonymous": "deny",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/v1/auth/register"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/login"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/refresh"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/forgot-password"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/reset-password"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/verify-email"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/resend-verification"): dict(_PUBLIC),
    ("POST", "/api/v1/auth/logout"): dict(_SIGNED_IN),
    ("POST", "/api/v1/auth/mfa/setup"): dict(_SIGNED_IN),
    ("POST", "/api/v1/auth/mfa/enable"): dict(_SIGNED_IN),
}
