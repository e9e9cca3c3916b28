"""Attachments: every signed-in role passes the gate; the object check inside answers 404
for tickets and attachments the caller may not see (tests/api/test_attachments.py)."""

_SIGNED_IN = {
    "anonymous": "deny",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/v1/tickets/{ticket_id}/attachments"): dict(_SIGNED_IN),
    ("GET", "/api/v1/tickets/{ticket_id}/attachments"): dict(_SIGNED_IN),
    ("GET", "/api/v1/attachments/{attachment_id}"): dict(_SIGNED_IN),
    ("DELETE", "/api/v1/attachments/{attachment_id}"): dict(_SIGNED_IN),
}
