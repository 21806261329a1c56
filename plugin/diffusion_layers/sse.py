"""Incremental Server-Sent Events parser (fed from QNetworkReply.readyRead)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple


@dataclass
class SseEvent:
    event: str
    data: str
    id: str = ""


class SseParser:
    """Feed raw bytes in any chunking; get whole events out. Comments (``: ping``) are dropped."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: List[str] = []
        self._id = ""
        self.comments = 0

    def feed(self, chunk: bytes) -> List[SseEvent]:
        self._buffer += chunk
        events: List[SseEvent] = []
        while True:
            cut = self._next_line_end()
            if cut is None:
                return events
            line_end, skip = cut
            line = self._buffer[:line_end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[line_end + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _next_line_end(self) -> Optional[Tuple[int, int]]:
        """(end of the next line, length of its terminator), or None until one arrives."""
        lf = self._buffer.find(b"\n")
        cr = self._buffer.find(b"\r")
        if cr < 0 or (0 <= lf < cr):
            return None if lf < 0 else (lf, 1)
        if cr + 1 >= len(self._buffer):
            return None  # a \r at the end may be the first half of \r\n
        return (cr, 2) if self._buffer[cr + 1 : cr + 2] == b"\n" else (cr, 1)

    def _line(self, line: str) -> Optional[SseEvent]:
        if line == "":
            if not self._data and not self._event:
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None
