"""/api/v1/users: one's own profile for everyone signed in; the agent list for managers
and administrators; account administration for administrators only."""

_SIGNED_IN = {
    "anonymous": "deny",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}
_MANAGERS = {
    "anonymous": "deny",
    "END_USER": "deny",
    "SUPPORT_AGENT": "deny",
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
    ("GET", "/api/v1/users/profile"): dict(_SIGNED_IN),
    ("PUT", "/api/v1/users/profile"): dict(_SIGNED_IN),
    # Deprecated aliases of /profile.
    ("GET", "/api/v1/users/me"): dict(_SIGNED_IN),
    ("PUT", "/api/v1/users/me"): dict(_SIGNED_IN),
    ("GET", "/api/v1/users/agents"): dict(_MANAGERS),
    ("GET", "/api/v1/users"): dict(_ADMIN),
    ("PUT", "/api/v1/users/{user_id}/role"): dict(_ADMIN),
    ("GET", "/api/v1/users/{user_id}/audit-log"): dict(_ADMIN),
    ("POST", "/api/v1/users/{user_id}/deactivate"): dict(_ADMIN),
}
