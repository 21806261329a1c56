"""Long work on the UI thread in slices, one slice per event-loop turn, so Krita stays
responsive: big reads and writes go in horizontal strips (``read_strips``/``write_strips``),
each a few milliseconds, with Krita painting and handling input between them."""

from __future__ import annotations

import logging
from typing import Callable, Iterator, List, Optional

from .errors import PluginError
from .geometry import Rect
from .qt import QObject, QTimer

log = logging.getLogger(__name__)

#: Pixels per strip: 0.5 Mpx is 2 MB of BGRA, a few ms for Krita to read or write (1 Mpx
#: strips still stalled a loaded 2-core machine for 110-140 ms now and then).
STRIP_PIXELS = 1 << 19


def strip_rows(width: int, pixels: int = STRIP_PIXELS) -> int:
    """Rows per strip for an area ``width`` px wide (at least one)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(1, pixels // width)


def strips(rect: Rect, rows: int) -> Iterator[Rect]:
    """``rect`` cut into horizontal strips of ``rows`` rows (the last one may be shorter)."""
    for y in range(rect.y, rect.bottom, rows):
        yield Rect(rect.x, y, rect.width, min(rows, rect.bottom - y))


def read_strips(
    read: Callable[[Rect], bytes], rect: Rect, out: List[bytes], pixels: int = STRIP_PIXELS
) -> Iterator[None]:
    """Append ``read(strip)`` for each strip of ``rect`` to ``out``, one strip per step."""
    for strip in strips(rect, strip_rows(rect.width, pixels)):
        out.append(read(strip))
        yield


def write_strips(
    write: Callable[[bytes, Rect], None],
    data: bytes,
    rect: Rect,
    bytes_per_pixel: int = 4,
    pixels: int = STRIP_PIXELS,
) -> Iterator[None]:
    """``write(part, strip)`` for each strip of ``rect`` (``data`` covers ``rect``)."""
    if len(data) != rect.width * rect.height * bytes_per_pixel:
        raise ValueError(f"{len(data)} bytes do not cover {rect} at {bytes_per_pixel} bytes/px")
    row = rect.width * bytes_per_pixel
    for strip in strips(rect, strip_rows(rect.width, pixels)):
        start = (strip.y - rect.y) * row
        write(data[start : start + strip.height * row], strip)
        yield


class Turns(QObject):
    """Run a generator one ``next()`` per event-loop turn; then ``on_done()``, or
    ``on_error(exc)`` when a step raises a PluginError (or ValueError). ``stop()`` ends it.
    A step that yields a number of milliseconds is followed by the next that much later."""

    def __init__(
        self,
        steps: Iterator[Optional[int]],
        on_done: Callable[[], None],
        on_error: Callable[[Exception], None],
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self._steps = steps
        self._on_done = on_done
        self._on_error = on_error
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._step)
        self.running = False

    def start(self) -> "Turns":
        self.running = True
        self._timer.start(0)
        return self

    def stop(self) -> None:
        self.running = False
        self._timer.stop()

    def _step(self) -> None:
        if not self.running:
            return
        try:
            delay = next(self._steps)
        except StopIteration:
            self.running = False
            self._on_done()
            return
        except (PluginError, ValueError) as exc:
            log.warning("stopped after an error: %s", exc)
            self.running = False
            self._on_error(exc)
            return
        self._timer.start(delay or 0)
