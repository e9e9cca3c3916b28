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

# Satisfaction: anyone may post (the survey link's token stands in for a sign-in; without
# it, only the ticket's requester); reading is the ticket's object check (random ids: 404).
_ANYONE = {
    r: "allow" for r in ("anonymous", "END_USER", "SUPPORT_AGENT", "MANAGER", "ADMINISTRATOR")
}
EXPECTED[("POST", "/api/v1/tickets/{ticket_id}/satisfaction")] = dict(_ANYONE)
EXPECTED[("GET", "/api/v1/tickets/{ticket_id}/satisfaction")] = dict(_ANYONE, anonymous="deny")
