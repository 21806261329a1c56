"""Per-client request rate limit: a token bucket per client, as plain ASGI middleware.

A client is its network address (not its token: someone guessing tokens must not get a fresh
bucket per guess, so unauthenticated requests count too). Each request takes one token; the bucket refills at ``rate`` tokens per second up to ``burst``. An empty bucket
answers ``429 rate_limited`` with ``Retry-After`` (whole seconds, at least 1).

Loopback clients are exempt unless ``limit_loopback`` is set: on the artist's own machine
the only client is the plugin, and a studio server is reached over the LAN. The table of
buckets is bounded (``max_clients``); the stalest buckets are dropped first, and a dropped
bucket comes back full, which errs on the side of serving the artist.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.errors import error_response


class RateLimitError(ValueError):
    """A rate-limit setting is out of range (names the setting and its value)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Thread-safe token buckets keyed by client. ``take(key)`` -> seconds to wait (0 = go)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        max_clients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise RateLimitError(f"rate={rate!r}: must be a finite number > 0")
        if not burst >= 1 or math.isinf(burst):
            raise RateLimitError(f"burst={burst!r}: must be a finite number >= 1")
        if max_clients < 1:
            raise RateLimitError(f"max_clients={max_clients!r}: must be >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for ``key``; 0.0 when allowed, else the seconds until one is due."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(self.burst, now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def clients(self) -> int:
        with self._lock:
            return len(self._buckets)


def client_key(scope: Scope) -> str:
    """The bucket key of a request: the client's address."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def is_loopback_client(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return client[0] in ("localhost", "testclient")


class RateLimitMiddleware:
    """Answer 429 with Retry-After once a client has used up its bucket."""

    def __init__(
        self, app: ASGIApp, buckets: TokenBuckets | None, limit_loopback: bool = False
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.limit_loopback = limit_loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.buckets is None:
            await self.app(scope, receive, send)
            return
        if not self.limit_loopback and is_loopback_client(scope):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_key(scope))
        if wait <= 0.0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        response = error_response(
            429,
            "rate_limited",
            f"too many requests from this client: over {self.buckets.rate:g} per second "
            f"(bursts of {self.buckets.burst:g}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
