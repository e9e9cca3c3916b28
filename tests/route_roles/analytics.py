"""Analytics: managers and administrators (MFA session); a support agent reads only their
own row of /analytics/agents; end users are refused."""

_PRIVILEGED = {
    "anonymous": "deny",
    "END_USER": "deny",
    "SUPPORT_AGENT": "deny",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/analytics/overview"): dict(_PRIVILEGED),
    ("GET", "/api/v1/analytics/tickets"): dict(_PRIVILEGED),
    ("GET", "/api/v1/analytics/export"): dict(_PRIVILEGED),
    ("GET", "/api/v1/analytics/agents"): dict(_PRIVILEGED, SUPPORT_AGENT="allow"),
}
