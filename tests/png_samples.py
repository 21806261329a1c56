"""PNG files of every colour type and bit depth, written by hand (zlib + struct), with the exact
RGBA and mask values a correct decoder must give for them.

Pillow cannot write 16-bit RGB, low-bit grey with tRNS and the like, so the files are built
here: IHDR, optional PLTE / tRNS / eXIf, one IDAT of filter-0 rows, IEND.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (x start, y start, x step, y step).
ADAM7 = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]
#: Every legal (colour type, bit depth) pair of the PNG specification.
PNG_TYPES = [
    (0, 1),
    (0, 2),
    (0, 4),
    (0, 8),
    (0, 16),
    (2, 8),
    (2, 16),
    (3, 1),
    (3, 2),
    (3, 4),
    (3, 8),
    (4, 8),
    (4, 16),
    (6, 8),
    (6, 16),
]
#: The pairs that may carry a tRNS chunk (types 4 and 6 have an alpha channel instead).
TRNS_TYPES = [(kind, depth) for kind, depth in PNG_TYPES if kind in (0, 2, 3)]


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def pack_rows(samples: np.ndarray, depth: int) -> bytes:
    """(H, W, C) integer samples as PNG scanlines, each with filter byte 0."""
    rows = []
    for row in samples.reshape(samples.shape[0], -1):
        if depth == 16:
            data = row.astype(">u2").tobytes()
        elif depth == 8:
            data = row.astype(np.uint8).tobytes()
        else:
            per = 8 // depth
            padded = np.concatenate([row, np.zeros((-len(row)) % per, row.dtype)])
            shifts = np.array([8 - depth * (i + 1) for i in range(per)])
            data = (padded.reshape(-1, per) << shifts).sum(axis=1).astype(np.uint8).tobytes()
        rows.append(b"\x00" + data)
    return b"".join(rows)


def write_png(
    samples: np.ndarray,
    color_type: int,
    depth: int,
    palette: np.ndarray | None = None,
    trns: bytes | None = None,
    exif: bytes | None = None,
    exif_after_idat: bool = False,
    interlaced: bool = False,
) -> bytes:
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[:, :, None]
    height, width = samples.shape[:2]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, int(interlaced))
    out = SIGNATURE + chunk(b"IHDR", ihdr)
    if palette is not None:
        out += chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        out += chunk(b"tRNS", trns)
    if exif is not None and not exif_after_idat:
        out += chunk(b"eXIf", exif)
    if interlaced:  # Adam7: seven reduced images, each its own scanlines
        passes = [samples[y::dy, x::dx] for x, y, dx, dy in ADAM7]
        raw = b"".join(pack_rows(p, depth) for p in passes if p.shape[0] and p.shape[1])
    else:
        raw = pack_rows(samples, depth)
    out += chunk(b"IDAT", zlib.compress(raw))
    if exif is not None and exif_after_idat:
        out += chunk(b"eXIf", exif)
    return out + chunk(b"IEND", b"")


def to8(values: np.ndarray, depth: int) -> np.ndarray:
    """What a sample of ``depth`` bits means in 8 bits: exact scaling below 8 bits, rounding
    from 16 (v * 257 -> v)."""
    values = np.asarray(values, np.int64)
    if depth < 8:
        return (values * (255 // ((1 << depth) - 1))).astype(np.uint8)
    if depth == 16:
        return ((values * 255 + 32767) // 65535).astype(np.uint8)
    return values.astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as Pillow's "L" conversion computes it (grey stays exact)."""
    from PIL import Image

    pixels = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))


def expected_mask(rgba: np.ndarray) -> np.ndarray:
    """The one mask rule: alpha when any pixel is not opaque, else luminance."""
    if rgba[..., 3].min() < 255:
        return rgba[..., 3].copy()
    return luma(rgba[..., :3])


@dataclass
class Sample:
    name: str
    data: bytes
    rgba: np.ndarray  # what the file means, (H, W, 4) uint8
    samples: np.ndarray  # the file's raw samples (H, W, channels)
    palette: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        return expected_mask(self.rgba)


def make_sample(
    color_type: int, depth: int, width: int = 13, height: int = 7, trns: bool = False, seed: int = 0
) -> Sample:
    """A random PNG of that type and depth (odd width: low bit depths need row padding)."""
    rng = np.random.default_rng(seed * 100 + color_type * 20 + depth)
    top = (1 << depth) - 1
    samples = rng.integers(0, top + 1, size=(height, width, CHANNELS[color_type]))
    if depth == 16:  # include exact v * 257 values and the extremes
        samples[0, :, :] = rng.integers(0, 256, size=(width, CHANNELS[color_type])) * 257
        samples[1, 0, :] = 0
        samples[1, 1, :] = 65535
    palette = trns_body = None
    alpha = np.full((height, width), 255, np.uint8)
    if color_type == 3:
        palette = rng.integers(0, 256, size=(top + 1, 3))
        rgb = palette[samples[..., 0]].astype(np.uint8)
        if trns:
            table = rng.integers(0, 256, size=max(1, (top + 1) // 2)).astype(np.uint8)
            trns_body = table.tobytes()
            index = samples[..., 0]
            alpha = np.where(index < len(table), table[np.minimum(index, len(table) - 1)], 255)
    elif color_type in (0, 4):
        grey = to8(samples[..., 0], depth)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        if color_type == 4:
            alpha = to8(samples[..., 1], depth)
        elif trns:
            key = samples[0, 0, 0]
            trns_body = struct.pack(">H", key)
            alpha = np.where(samples[..., 0] == key, 0, 255)
    else:
        rgb = to8(samples[..., :3], depth)
        if color_type == 6:
            alpha = to8(samples[..., 3], depth)
        elif trns:
            key = samples[0, 0, :3]
            trns_body = struct.pack(">HHH", *key)
            alpha = np.where((samples[..., :3] == key).all(axis=2), 0, 255)
    rgba = np.dstack([rgb, alpha]).astype(np.uint8)
    data = write_png(samples, color_type, depth, palette=palette, trns=trns_body)
    name = f"type{color_type}-{depth}bit" + ("-tRNS" if trns else "")
    return Sample(name, data, rgba, samples, palette)


def all_samples(width: int = 13, height: int = 7) -> list[Sample]:
    """Every colour type x bit depth, and every tRNS-capable pair with a tRNS chunk."""
    plain = [make_sample(kind, depth, width, height) for kind, depth in PNG_TYPES]
    keyed = [make_sample(kind, depth, width, height, trns=True) for kind, depth in TRNS_TYPES]
    return plain + keyed


def exif_orientation(value: int) -> bytes:
    """A minimal big-endian TIFF/EXIF block with one Orientation tag (the eXIf chunk body)."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)
    return b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\x00" * 4
