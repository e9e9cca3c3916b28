"""CORS whose refusals use the API's JSON error shape.

Starlette's `CORSMiddleware` answers a refused preflight with 400 ``text/plain``
("Disallowed CORS origin"); every other refusal of the API is JSON
(`api.errors.error_body`), so clients parse one shape.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from api.errors import error_body

_PREFIX = "Disallowed CORS "


class JsonCorsMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as a JSON error (still 400,
    still with the `Vary` and allow-* headers Starlette chose)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        text = bytes(response.body).decode("latin-1")
        refused = text.removeprefix(_PREFIX).split(", ") if text.startswith(_PREFIX) else []
        headers = {
            key: value
            for key, value in response.headers.items()
            if key not in ("content-type", "content-length")
        }
        return JSONResponse(
            error_body(
                "cors_refused",
                "this cross-origin request is not allowed",
                {"refused": refused},
            ),
            status_code=400,
            headers=headers,
        )
