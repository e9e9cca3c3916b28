"""Route x role expectations, one module per area (auth.py, tickets.py, ...).

Each module defines ``EXPECTED: dict[tuple[str, str], dict[str, str]]`` mapping
(METHOD, path template) to {"anonymous"|ROLE: "allow"|"deny"}. "deny" means 401 for anonymous
and 403 (or 404 where the object is hidden) for a signed-in role; "allow" means the gate lets
the call through (any status but 401/403). tests/api/test_route_roles.py merges every module and
fails for a route of the app with no entry.
"""
