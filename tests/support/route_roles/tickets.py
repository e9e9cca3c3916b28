"""Ticket commands and single-ticket reads: every signed-in user may call the routes (the
object check then hides other people's tickets with 404); assignment is for staff;
deletion for administrators with an MFA session. Past the gate, an end user's edit of a
staff-only field (priority, category, due date) is refused with 403, by one rule shared
with the ticket's workflow (helpdesk.policy; tests/api/test_seed_contract.py)."""

_EVERYONE = {
    "anonymous": "deny",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}
_STAFF = {**_EVERYONE, "END_USER": "deny"}
_ADMIN = {
    "anonymous": "deny",
    "END_USER": "deny",
    "SUPPORT_AGENT": "deny",
    "MANAGER": "deny",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/v1/tickets"): dict(_EVERYONE),
    ("GET", "/api/v1/tickets/{ticket_id}"): dict(_EVERYONE),
    ("PUT", "/api/v1/tickets/{ticket_id}"): dict(_EVERYONE),
    ("DELETE", "/api/v1/tickets/{ticket_id}"): dict(_ADMIN),
    ("POST", "/api/v1/tickets/{ticket_id}/assign"): dict(_STAFF),
    ("POST", "/api/v1/tickets/{ticket_id}/status"): dict(_EVERYONE),
    ("GET", "/api/v1/tickets/{ticket_id}/history"): dict(_EVERYONE),
}
