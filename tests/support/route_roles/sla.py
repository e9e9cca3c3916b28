"""SLA administration: managers and administrators read; administrators (MFA session) write.
Manual escalation is for staff (its body may be empty: every field is optional)."""

_READ = {
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
_STAFF = {
    "anonymous": "deny",
    "END_USER": "deny",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {}
for _base, _param in (
    ("/api/v1/sla-policies", "policy_id"),
    ("/api/v1/escalation-rules", "rule_id"),
    ("/api/v1/business-calendars", "calendar_id"),
):
    EXPECTED[("GET", _base)] = dict(_READ)
    EXPECTED[("POST", _base)] = dict(_ADMIN)
    EXPECTED[("GET", f"{_base}/{{{_param}}}")] = dict(_READ)
    EXPECTED[("PUT", f"{_base}/{{{_param}}}")] = dict(_ADMIN)
    EXPECTED[("DELETE", f"{_base}/{{{_param}}}")] = dict(_ADMIN)
EXPECTED[("POST", "/api/v1/tickets/{ticket_id}/escalate")] = dict(_STAFF)
