"""ASGI middleware: request context (id, client IP, user agent) and security headers."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpdesk.context import RequestContext, set_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    b"https://fastapi.tiangolo.com; frame-ancestors 'none'"
)


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Iterable[ipaddress._BaseNetwork]
) -> str | None:
    """The caller's address: X-Forwarded-For is believed only from trusted proxies,
    walking the chain from the right until the first untrusted hop."""
    trusted = list(trusted)

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if peer is None or not forwarded_for or not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: list[str], hsts: bool) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        peer = scope["client"][0] if scope.get("client") else None
        ip = client_ip(peer, headers.get("x-forwarded-for"), self.trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        set_context(
            RequestContext(
                request_id=request_id, ip=ip, user_agent=(headers.get("user-agent") or "")[:255]
            )
        )
        is_docs = scope["path"] in ("/docs", "/redoc") or scope["path"].startswith("/docs/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                for key, value in SECURITY_HEADERS:
                    if key == b"content-security-policy" and is_docs:
                        value = _DOCS_CSP
                    if key not in present:
                        raw.append((key, value))
                raw.append((b"x-request-id", request_id.encode()))
                if self.hsts:
                    raw.append(
                        (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
                    )
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
