"""Refuse requests that come from web pages: cross-site requests and DNS rebinding.

No CORS headers means a web page cannot *read* our answers, but a browser still *sends* a
cross-site multipart POST (a "simple" request needs no preflight), so any page the artist
visits could queue jobs on a local backend without a token. The Krita plugin never sends an
``Origin`` header and never says ``Sec-Fetch-Site: cross-site``/``same-site``; browsers always
do on such requests. So those are refused with 403.

DNS rebinding (a page at ``http://evil.example:7860`` whose name resolves to 127.0.0.1 is
"same-origin" to its own requests) is stopped by the ``Host`` check: on a loopback bind only
loopback host names are served. A LAN bind needs a token anyway, which a page does not have,
so the Host check is skipped there (studios reach the server by many names).
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.errors import error_response

BROWSER_SITES = ("cross-site", "same-site")


def host_name(host_header: str) -> str:
    """``Host`` without its port: ``[::1]:7860`` -> ``::1``, ``localhost:7860`` -> ``localhost``."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def is_loopback_name(name: str, bound_host: str) -> bool:
    if name in ("localhost", bound_host.lower()):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OriginGuardMiddleware:
    def __init__(self, app: ASGIApp, check_host: bool, bound_host: str = "127.0.0.1") -> None:
        self.app = app
        self.check_host = check_host
        self.bound_host = bound_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reason = None
        origin = headers.get("origin")
        if origin is not None:
            reason = f"requests from web pages (Origin {origin[:80]!r}) are refused"
        elif headers.get("sec-fetch-site", "").lower() in BROWSER_SITES:
            reason = "cross-site browser requests are refused"
        elif self.check_host:
            name = host_name(headers.get("host", ""))
            if not is_loopback_name(name, self.bound_host):
                reason = (
                    f"Host {name[:80]!r} is not a loopback name; this server only answers "
                    "requests for 127.0.0.1/localhost (bind another host with a token for LAN use)"
                )
        if reason is None:
            await self.app(scope, receive, send)
            return
        response = error_response(403, "forbidden_origin", reason)
        await response(scope, receive, send)
