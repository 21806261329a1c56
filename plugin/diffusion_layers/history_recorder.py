"""Recording results into a document's history without blocking Krita's UI thread.

The costly half (clipping to the selection, the PNG and the thumbnail: ~0.5 s for a
1024 x 1024 result) runs on a one-thread ``QThreadPool`` (QImage is safe off the GUI thread);
the cheap half (``history.commit``: annotations and the index) runs back on the UI thread once
the work is done, and only if the document is still open. One worker thread keeps the results'
order; slots are chosen at commit from the index as it is then, so results arriving in quick
succession (or a history cleared meanwhile) never share a slot. At Krita's quit the work under
way is finished (bounded wait) and written into the documents still open.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Callable, List, Optional

from . import history
from .canvas import CanvasDocument
from .errors import PluginError
from .geometry import Rect
from .pixels import crop_gray
from .placement import mask_window
from .qt import QCoreApplication, QObject, QRect, QRunnable, QThreadPool, pyqtSignal
from .results import clip_to_selection

log = logging.getLogger(__name__)

QUIT_WAIT_MS = 10000  # at quit: how long to wait for encodings under way
BAND_ROWS = 64  # clip in bands: each Python step holds the GIL (and so the UI thread) briefly


def clipped(pixels: bytes, rect: Rect, region: Optional[Rect], mask: Optional[bytes]) -> bytes:
    """``results.new_layer``'s pixels (alpha 0 where the selection is empty), computed band by
    band so that the worker never holds the GIL for long (for the worker thread)."""
    if mask is None or region is None:
        return pixels
    window = mask_window(region, rect)
    qrect = QRect(window.x, window.y, window.width, window.height)
    selection = crop_gray(mask, region.width, region.height, qrect)
    width, bands = rect.width, []
    for top in range(0, rect.height, BAND_ROWS):
        start, stop = top * width, min(top + BAND_ROWS, rect.height) * width
        bands.append(clip_to_selection(pixels[start * 4 : stop * 4], selection[start:stop]))
    return b"".join(bands)


@dataclass
class _Job:
    key: str
    doc: CanvasDocument
    make: Callable[[], List[history.NewEntry]]  # runs on the worker thread
    limit_mb: int
    encoded: Optional[List[history.Encoded]] = None
    error: Optional[str] = None


class _Relay(QObject):
    finished = pyqtSignal()  # emitted on the worker thread, delivered on the UI thread


class _Encode(QRunnable):
    def __init__(self, job: _Job, outbox: "queue.Queue[_Job]", relay: _Relay) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the recorder keeps it until its result is delivered
        self.job, self.outbox, self.relay = job, outbox, relay

    def run(self) -> None:
        try:
            self.job.encoded = history.encode(self.job.make())
        except (PluginError, ValueError) as exc:
            self.job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must always report back
            log.exception("history encoding of %s failed", self.job.key)
            self.job.error = f"unexpected error ({exc})"
        self.outbox.put(self.job)
        self.relay.finished.emit()


class HistoryRecorder(QObject):
    recorded = pyqtSignal(str)  # document key: its history changed
    failed = pyqtSignal(str)  # a sentence for the artist

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one at a time: results are written in order
        self._outbox: "queue.Queue[_Job]" = queue.Queue()
        self._tasks: List[_Encode] = []
        self._relay = _Relay(self)
        self._relay.finished.connect(self._deliver)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def pending(self) -> int:
        """Results submitted and not yet written (or dropped)."""
        return len(self._tasks)

    def submit(
        self,
        key: str,
        doc: CanvasDocument,
        make: Callable[[], List[history.NewEntry]],
        limit_mb: int,
    ) -> None:
        """Encode ``make()``'s results off the UI thread, then write them into ``doc``."""
        task = _Encode(_Job(key, doc, make, limit_mb), self._outbox, self._relay)
        self._tasks.append(task)
        self._pool.start(task)

    def shutdown(self) -> None:
        """Finish the work under way (bounded) and write it into the documents still open."""
        if not self._pool.waitForDone(QUIT_WAIT_MS):
            log.warning("history encoding still running at quit; its results are not kept")
        self._deliver()

    def _deliver(self) -> None:
        while True:
            try:
                job = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._tasks = [t for t in self._tasks if t.job is not job]
            self._write(job)

    def _write(self, job: _Job) -> None:
        if not job.doc.is_open():  # closed while encoding: nothing to write into
            log.info("document %s closed before its results were kept in the history", job.key)
            return
        try:
            if job.error is not None:
                raise PluginError(job.error)
            history.commit(job.doc, job.encoded or [], job.limit_mb)
        except (PluginError, ValueError) as exc:
            log.warning("results of %s not kept in the history: %s", job.key, exc)
            self.failed.emit(f"The results could not be kept in the document's history: {exc}")
            return
        self.recorded.emit(job.key)
