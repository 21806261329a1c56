"""Receive a large raw BGRA8 result as it arrives, into one buffer of the announced size.

Reading a 50-100 MB answer in one ``readAll()`` when it has finished copies it several times
on the UI thread (hundreds of milliseconds); here every ``readyRead`` moves the bytes that
came (a few hundred KB) into a buffer allocated once from ``X-Width``/``X-Height``, so the
finished answer needs no further copy."""

from __future__ import annotations

from typing import Optional, cast

from .qt import QNetworkReply, QNetworkRequest


class RawReceiver:
    """Collects a 200 answer's body as it arrives; an error answer is left to be read whole
    (its JSON message is decoded by the client)."""

    def __init__(self) -> None:
        self.buffer: Optional[bytearray] = None
        self.filled = 0
        self.extra: bytearray = bytearray()  # bytes past the announced size, or without one

    def take(self, reply: QNetworkReply) -> None:
        """``readyRead``: move what arrived into the buffer."""
        if reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute) != 200:
            return
        if self.buffer is None:
            width, height = size_of(reply)
            self.buffer = bytearray(max(0, width * height * 4))
        chunk = reply.readAll().data()
        room = len(self.buffer) - self.filled
        self.buffer[self.filled : self.filled + min(room, len(chunk))] = chunk[:room]
        self.filled += min(room, len(chunk))
        if len(chunk) > room:
            self.extra += chunk[room:]

    def body(self, rest: bytes) -> bytes:
        """The whole body once the answer finished (``rest``: what was still unread)."""
        if self.buffer is None:
            return rest
        if rest:
            room = len(self.buffer) - self.filled
            self.buffer[self.filled : self.filled + min(room, len(rest))] = rest[:room]
            self.filled += min(room, len(rest))
            self.extra += rest[room:]
        if self.extra or self.filled != len(self.buffer):
            return bytes(self.buffer[: self.filled]) + bytes(self.extra)  # size mismatch
        return cast(bytes, self.buffer)  # bytes-like, not copied again


def size_of(reply: QNetworkReply) -> "tuple[int, int]":
    """The X-Width/X-Height headers (0 when absent or not numbers)."""
    try:
        width = int(bytes(reply.rawHeader(b"X-Width").data()) or b"0")
        height = int(bytes(reply.rawHeader(b"X-Height").data()) or b"0")
    except ValueError:
        return 0, 0
    return width, height
