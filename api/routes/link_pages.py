"""The two pages the emailed links open when no portal is configured
(`HELPDESK_PUBLIC_BASE_URL` left at the API's own address): `/verify-email#token=...` and
`/reset-password#token=...`.

Each is one small HTML document with no script from elsewhere: a strict Content Security
Policy allows only its own inline script, by a nonce new to each response, and lets it talk
to this origin only. The script reads the token from the fragment (which never reaches a
server log or a Referer), removes it from the address bar, and posts it (with the new
password, for a reset) to the API. With a portal configured the links go there instead
(`helpdesk.services.one_time_tokens.link`); these pages then simply go unused."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

_PAGES = Path(__file__).resolve().parent.parent / "pages"
API_PREFIX = "/api/v1"


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; "
        "connect-src 'self'; "
        "img-src 'none'; "
        "form-action 'none'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def _page(name: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    html = (_PAGES / f"{name}.html").read_text(encoding="utf-8")
    html = html.replace("{{NONCE}}", nonce).replace("{{API}}", API_PREFIX)
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": content_security_policy(nonce),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/verify-email", response_class=HTMLResponse, include_in_schema=False)
async def verify_email_page() -> HTMLResponse:
    """Confirms the address with the link's token (POST /api/v1/auth/verify-email)."""
    return _page("verify-email")


@router.get("/reset-password", response_class=HTMLResponse, include_in_schema=False)
async def reset_password_page() -> HTMLResponse:
    """Asks for a new password, then POST /api/v1/auth/reset-password with the token."""
    return _page("reset-password")
