"""Write finished layers to the output folder: PNG with the ``parameters`` chunk, atomically.

Names sort by time and say what they are: ``20260126-041502_<job id>_<index>_<seed>.png``.
Each file is written to a temporary name in the same folder, flushed to disk and renamed, so a
reader never sees half a file. Files are never deleted by the server.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backend.engine import metadata as engine_metadata
from backend.engine.types import Layer


class OutputError(Exception):
    """The output folder cannot be created or written (disk full, permissions, ...)."""

    code = "output_write_failed"


def rgba_to_bgra_bytes(array: np.ndarray) -> bytes:
    """RGBA (H, W, 4) uint8 as raw BGRA8 bytes (Krita's layout)."""
    if array.ndim != 3 or array.shape[2] != 4 or array.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 4) uint8, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array[:, :, [2, 1, 0, 3]]).tobytes()


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """Any (H, W), (H, W, 3) or (H, W, 4) uint8 array as a PNG (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buffer, format="PNG", compress_level=compress_level
    )
    return buffer.getvalue()


def encode_result_png(layer: Layer) -> bytes:
    """The layer as PNG bytes with the ``parameters`` and ``diffusion_layers`` chunks."""
    return engine_metadata.encode_png(
        layer.image, layer.metadata, compress_level=4, offset=(layer.x, layer.y)
    )


class OutputWriter:
    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir)

    def file_name(self, job_id: str, index: int, seed: int, when: float) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
        return f"{stamp}_{job_id}_{index}_{seed}.png"

    def write(self, job_id: str, index: int, layer: Layer, when: float) -> Path:
        """Write one layer; returns its final path. Raises OutputError on any I/O failure."""
        target = self.output_dir / self.file_name(job_id, index, layer.seed, when)
        data = encode_result_png(layer)
        tmp_name: str | None = None
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=self.output_dir)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
            tmp_name = None
        except OSError as exc:
            raise OutputError(
                f"could not write the result to {str(self.output_dir)!r}: {exc.strerror or exc}"
            ) from exc
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
        return target
