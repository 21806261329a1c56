"""Write finished layers to the output folder: PNG with the ``parameters`` chunk, atomically.

Names sort by time and say what they are: ``20260126-041502_<job id>_<index>_<seed>.png``.
Each file is written to a temporary name in the same folder and renamed, so a reader never
sees half a file. Files are never deleted by the server.

Two phases, so the file is on disk before ``done`` without costing the artist the encode:

1. ``write`` (on the worker, before the job is reported done) writes a stored PNG
   (``png_level=0``: row bytes in stored deflate blocks, tEXt/iTXt metadata; milliseconds for
   2048², 16 MiB) and renames it into place. It is complete and readable at once.
2. A compactor thread then re-encodes it at ``compact_level`` (Up filter + parallel RLE
   deflate, about half the size), fsyncs it and atomically replaces the stored file, unless
   the artist moved or deleted it meanwhile. Until then the stored file sits in the page cache
   (durable across any process crash; an OS crash in that second could lose it). With
   ``compact_level=None`` phase 1 writes at ``png_level`` and fsyncs before returning.

The encoder is ``backend.engine.png_fast``; see docs/benchmarks/README.md ("Transfer").
"""

from __future__ import annotations

import io
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from backend.engine import metadata as engine_metadata
from backend.engine.png_fast import png_pieces
from backend.engine.types import Layer

log = logging.getLogger(__name__)

#: Level of the file written before ``done`` (0 = stored: fastest, largest).
FAST_PNG_LEVEL = 0
#: Level the compactor re-encodes it at afterwards (None: no compaction).
COMPACT_PNG_LEVEL = 1
#: Compactions waiting at most; beyond that files stay stored (valid, just larger).
MAX_PENDING = 16
#: File buffer: level-0 pieces are ~8 KiB rows; the default 8 KiB buffer would make each
#: one a syscall (measured 60 ms vs 20 ms for a 2048² file).
WRITE_BUFFER = 1 << 20
#: Deflate threads of the compactor: it runs beside the next generation, so it stays modest.
COMPACT_WORKERS = 2


class OutputError(Exception):
    """The output folder cannot be created or written (disk full, permissions, ...)."""

    code = "output_write_failed"


def rgba_to_bgra(array: np.ndarray) -> np.ndarray:
    """RGBA (H, W, 4) uint8 as a new contiguous BGRA array (one cv2 pass)."""
    if array.ndim != 3 or array.shape[2] != 4 or array.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 4) uint8, got {array.shape} {array.dtype}")
    return cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)


def rgba_to_bgra_view(array: np.ndarray) -> memoryview:
    """RGBA (H, W, 4) uint8 as raw BGRA8 (Krita's layout): a flat byte view, no extra copy.
    Starlette sends a memoryview body as it is."""
    return rgba_to_bgra(array).reshape(-1).data


def rgba_to_bgra_bytes(array: np.ndarray) -> bytes:
    """RGBA (H, W, 4) uint8 as raw BGRA8 bytes (Krita's layout)."""
    return rgba_to_bgra(array).tobytes()


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """Any (H, W), (H, W, 3) or (H, W, 4) uint8 array as a PNG (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buffer, format="PNG", compress_level=compress_level
    )
    return buffer.getvalue()


def result_png_pieces(
    layer: Layer, level: int = COMPACT_PNG_LEVEL, workers: int | None = None
) -> list[bytes | memoryview]:
    """The layer's PNG file (``parameters`` + ``diffusion_layers`` chunks) as byte pieces."""
    text = engine_metadata.png_text(layer.metadata, offset=(layer.x, layer.y))
    return png_pieces(layer.image, text, level=level, workers=workers)


def encode_result_png(layer: Layer, level: int = COMPACT_PNG_LEVEL) -> bytes:
    """The layer as PNG bytes with the ``parameters`` and ``diffusion_layers`` chunks."""
    return b"".join(result_png_pieces(layer, level))


def write_atomic(
    target: Path, pieces: list[bytes | memoryview], sync: bool, prefix: str = ".partial-"
) -> int:
    """Write ``pieces`` to a temporary file ``<prefix>*`` beside ``target`` and rename it over
    ``target`` (fsynced first when ``sync``). Returns the new file's inode. Raises OSError."""
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        with os.fdopen(fd, "wb", buffering=WRITE_BUFFER) as handle:
            handle.writelines(pieces)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
            inode = os.fstat(handle.fileno()).st_ino
        os.replace(tmp_name, target)
        tmp_name = None
        return inode
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


@dataclass
class _Compaction:
    target: Path
    inode: int
    layer: Layer


class OutputWriter:
    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        png_level: int = FAST_PNG_LEVEL,
        compact_level: int | None = COMPACT_PNG_LEVEL,
    ) -> None:
        for name, level in (("png_level", png_level), ("compact_level", compact_level)):
            if level is not None and not 0 <= level <= 9:
                raise ValueError(f"{name}={level!r}: expected 0..9")
        self.output_dir = Path(output_dir)
        self.png_level = png_level
        self.compact_level = None if compact_level == png_level else compact_level
        self.compacted = 0  # files re-encoded and replaced so far
        self._pending: queue.Queue[_Compaction | None] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._waiting: set[Path] = set()  # targets queued or being compacted
        self._closed = False

    def file_name(self, job_id: str, index: int, seed: int, when: float) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
        return f"{stamp}_{job_id}_{index}_{seed}.png"

    def write(self, job_id: str, index: int, layer: Layer, when: float) -> Path:
        """Write one layer (complete, renamed into place); returns its final path and queues
        its compaction. Raises OutputError on any I/O failure."""
        target = self.output_dir / self.file_name(job_id, index, layer.seed, when)
        pieces = result_png_pieces(layer, self.png_level)
        compact = self.compact_level is not None and not self._closed
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            inode = write_atomic(target, pieces, sync=not compact)
        except OSError as exc:
            raise OutputError(
                f"could not write the result to {str(self.output_dir)!r}: {exc.strerror or exc}"
            ) from exc
        if compact:
            self._queue_compaction(_Compaction(target, inode, layer))
        return target

    # --- compaction (phase 2) ------------------------------------------------------------

    def wait_compacted(self, timeout: float = 30.0, target: Path | None = None) -> bool:
        """Block until the queued compactions (or only ``target``'s) are finished; False on
        timeout. The .png route calls it so it always serves a file's final bytes."""
        with self._idle:
            return self._idle.wait_for(
                lambda: target not in self._waiting if target else not self._waiting, timeout
            )

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued compactions (up to ``timeout``) and stop the thread."""
        with self._idle:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self.wait_compacted(timeout)
        try:
            self._pending.put_nowait(None)
        except queue.Full:
            return  # still busy after the timeout: the daemon thread dies with the process
        thread.join(timeout)

    def _queue_compaction(self, item: _Compaction) -> None:
        with self._idle:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._compact_loop, name="png-compactor", daemon=True
                )
                self._thread.start()
            try:
                self._pending.put_nowait(item)
            except queue.Full:
                log.info("compaction queue full: %s stays stored (uncompressed)", item.target)
                return
            self._waiting.add(item.target)

    def _compact_loop(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            try:
                self._compact(item)
            except Exception:  # never let one file stop the compactor
                log.exception("compacting %s failed; it stays stored", item.target)
            finally:
                with self._idle:
                    self._waiting.discard(item.target)
                    self._idle.notify_all()

    def _compact(self, item: _Compaction) -> None:
        # 1. Encode at the compact level (the slow part, off the critical path).
        assert self.compact_level is not None
        pieces = result_png_pieces(item.layer, self.compact_level, COMPACT_WORKERS)
        # 2. Replace the stored file only if it is still the one we wrote.
        try:
            if os.stat(item.target).st_ino != item.inode:
                return
        except FileNotFoundError:
            return  # the artist moved or deleted it: do not bring it back
        write_atomic(item.target, pieces, sync=True, prefix=".compacting-")
        _sync_folder(item.target.parent)
        self.compacted += 1


def _sync_folder(folder: Path) -> None:
    """fsync a folder so a rename in it is durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
