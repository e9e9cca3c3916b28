"""Categories: every signed-in user reads; administrators (MFA session) change them."""

_EVERYONE = {
    "anonymous": "deny",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}
_ADMIN = {
    "anonymous": "deny",
    "END_USER": "deny",
    "SUPPORT_AGENT": "deny",
    "MANAGER": "deny",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/categories"): dict(_EVERYONE),
    ("POST", "/api/v1/categories"): dict(_ADMIN),
    ("PUT", "/api/v1/categories/{category_id}"): dict(_ADMIN),
    ("DELETE", "/api/v1/categories/{category_id}"): dict(_ADMIN),
}
