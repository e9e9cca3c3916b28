"""Probes, metrics, the API's own documentation and the emailed links' pages: public by
design (no PHI in any)."""

_PUBLIC = {
    "anonymous": "allow",
    "END_USER": "allow",
    "SUPPORT_AGENT": "allow",
    "MANAGER": "allow",
    "ADMINISTRATOR": "allow",
}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/healthz"): dict(_PUBLIC),
    ("GET", "/readyz"): dict(_PUBLIC),
    ("GET", "/api/v1/openapi.json"): dict(_PUBLIC),
    ("GET", "/docs"): dict(_PUBLIC),
    ("GET", "/docs/oauth2-redirect"): dict(_PUBLIC),
    # No token, but only from metrics_allowed_networks (the test client is on loopback);
    # elsewhere 404 (tests/api/test_metrics.py).
    ("GET", "/metrics"): dict(_PUBLIC),
    # The pages of emailed links (static HTML; the token stays in the fragment).
    ("GET", "/verify-email"): dict(_PUBLIC),
    ("GET", "/reset-password"): dict(_PUBLIC),
}
