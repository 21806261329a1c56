"""Access tokens: the single ``token`` setting and a tokens file with one token per artist.

The tokens file has one ``name token`` pair per line (``#`` starts a comment). It is re-read
whenever its modification time or size changes, so deleting an artist's line revokes that token
on the next request, without a restart. The name is the artist's identity for the fair queue and
the per-artist queued-job limit (``backend.api.clients``). Once a tokens file is configured the
server keeps requiring tokens even if the file becomes empty or unreadable (then nobody gets in,
and the log says why): a broken file never opens the server.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"  # the name of the single ``token`` setting


class TokensFileError(ValueError):
    """A line of the tokens file is malformed; the message names the file and line."""


def parse_tokens(text: str, source: str = "tokens file") -> dict[str, str]:
    """``{token: name}`` from the file's text; raises TokensFileError naming the bad line."""
    table: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokensFileError(f"{source} line {number}: expected 'name token'")
        name, token = parts
        if len(token) < 8:
            raise TokensFileError(f"{source} line {number}: the token of {name!r} is too short")
        table[token] = name
    return table


class TokenTable:
    def __init__(self, token: str | None = None, path: str | os.PathLike[str] | None = None):
        self.token = token
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._table: dict[str, str] = {}
        if self.path is not None:
            self._reload()

    @property
    def required(self) -> bool:
        return bool(self.token) or self.path is not None

    def match(self, header: str | None) -> str | None:
        """The artist name for an ``Authorization: Bearer`` header; None if no token matches."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        presented = value.strip().encode("utf-8")
        found = None
        if self.token and hmac.compare_digest(presented, self.token.encode("utf-8")):
            found = DEFAULT_NAME
        for token, name in self._current().items():
            # Compare with every entry (constant time per entry, no early exit).
            if hmac.compare_digest(presented, token.encode("utf-8")) and found is None:
                found = name
        return found

    def _current(self) -> dict[str, str]:
        if self.path is None:
            return {}
        with self._lock:
            self._reload()
            return self._table

    def _reload(self) -> None:
        assert self.path is not None
        stamp: tuple[int, int] = (-1, -1)  # the file is missing
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == self._stamp:
                return
            table = parse_tokens(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, TokensFileError, UnicodeDecodeError) as exc:
            if stamp != self._stamp:  # say it once per change of the file
                log.error("tokens file %s unusable, refusing its tokens: %s", self.path, exc)
            self._table, self._stamp = {}, stamp
            return
        self._table, self._stamp = table, stamp
        log.info("tokens file %s: %d token(s)", self.path, len(table))
