"""Comments: every signed-in user may call the routes (the object checks then hide tickets
and comments the caller may not see with 404; internal notes and editing rules are checked
in tests/api/test_comments.py: an end user asking for an internal note gets 403)."""

_EVERYONE = {
    "anonymous": "deny",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/tickets/{ticket_id}/comments"): dict(_EVERYONE),
    ("POST", "/api/v1/tickets/{ticket_id}/comments"): dict(_EVERYONE),
    ("PUT", "/api/v1/comments/{comment_id}"): dict(_EVERYONE),
    ("DELETE", "/api/v1/comments/{comment_id}"): dict(_EVERYONE),
}
