"""The ticket list: every signed-in user (an end user sees only their own tickets)."""

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/tickets"): {
        "anonymous": "deny",
        "END_USER": "allow",
        "SUPPORT_AGENT": "allow",
        "MANAGER": "allow",
        "ADMINISTRATOR": "allow",
    },
}
