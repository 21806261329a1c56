"""Who a request comes from, for the fair queue and the per-artist queued-job limit.

With tokens, the client is the token's artist name from the tokens file (``token:NAME``); the
shared single ``token`` setting names nobody, so then (and without tokens) the client is the
network address. On loopback, where every local program has the same address, a client may name
itself with an ``X-Client-Id`` header (at most 64 printable characters) so that two programs on
one machine get separate lanes; a remote client cannot pick lanes this way.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from backend.api.tokens import DEFAULT_NAME

CLIENT_HEADER = "x-client-id"
MAX_CLIENT_ID = 64


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


def client_id(request: Request) -> str:
    name = request.scope.get("state", {}).get("token_name")
    if name and name != DEFAULT_NAME:
        return f"token:{name}"
    host = request.client.host if request.client else "unknown"
    own = request.headers.get(CLIENT_HEADER, "").strip()[:MAX_CLIENT_ID]
    if own and own.isprintable() and _is_loopback(host):
        return f"{host}/{own}"
    return host
