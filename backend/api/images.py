"""Decode and encode the image parts of requests and responses, with size limits.

Codecs by Content-Type: ``image/png`` (any PNG; its declared size is checked in the IHDR chunk
before a single pixel is decoded, so a PNG bomb costs nothing) or the raw formats of
``backend.protocol`` (``RAW_BGRA``: width*height*4 bytes, ``RAW_GRAY``: width*height bytes).
Images come out as the engine wants them: RGBA (H, W, 4) uint8 or a mask (H, W) uint8.
Parts may be any bytes-like object (the multipart reader hands out ``memoryview`` slices of the
request buffer); raw BGRA becomes RGBA in one ``cv2.cvtColor`` pass, the only copy made.
"""

from __future__ import annotations

import io
import struct
from typing import TypeAlias

import cv2
import numpy as np
from PIL import Image
from starlette.responses import StreamingResponse

from backend.api.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from backend.protocol import PNG, RAW_BGRA, RAW_GRAY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CODECS = (PNG, RAW_BGRA, RAW_GRAY)
#: Slice size of raw responses. One 16 MiB write makes asyncio's transport (Python 3.11)
#: buffer the rest and memmove it on every partial send: ~50 ms on loopback for 2048² where
#: 256 KiB slices take ~15 ms (measured; docs/benchmarks/README.md, "Transfer").
RAW_SLICE = 256 * 1024
Bytes: TypeAlias = "bytes | bytearray | memoryview"


def png_declared_size(data: Bytes, field: str) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, without decoding anything."""
    data = bytes(data[:24])
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise Unprocessable(f"{field}: not a PNG file (bad signature or header)", field=field)
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _check_size(field: str, width: int, height: int, expected: tuple[int, int]) -> None:
    if (width, height) != expected:
        raise Unprocessable(
            f"{field}: image is {width}x{height} but params say {expected[0]}x{expected[1]}",
            field=field,
        )


def decode_png(data: Bytes, field: str, expected: tuple[int, int], max_pixels: int, mode: str):
    """Decode a PNG part into a uint8 array of ``mode`` ("RGBA" or "L")."""
    width, height = png_declared_size(data, field)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{field}: PNG declares {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels}",
            field=field,
        )
    _check_size(field, width, height, expected)
    # The IHDR check above already bounds the size (below PIL's own MAX_IMAGE_PIXELS guard,
    # which stays in force as a second line: DecompressionBombError).
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            img.load()
            converted = img.convert(mode)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"{field}: PNG too large to decode ({exc})", field=field) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise Unprocessable(f"{field}: corrupt or truncated PNG ({exc})", field=field) from exc
    _check_size(field, converted.width, converted.height, expected)
    return np.asarray(converted, dtype=np.uint8).copy()


def decode_raw_view(data: Bytes, field: str, expected: tuple[int, int], channels: int):
    """The raw part as a flat read-only uint8 view after checking its length (no copy)."""
    width, height = expected
    need = width * height * channels
    have = memoryview(data).nbytes
    if have != need:
        raise Unprocessable(
            f"{field}: raw part has {have} bytes; {width}x{height}x{channels} needs {need}",
            field=field,
        )
    return np.frombuffer(data, dtype=np.uint8)


def decode_raw(data: Bytes, field: str, expected: tuple[int, int], channels: int) -> np.ndarray:
    """A raw part as a new array: (H, W) gray, or RGBA (H, W, 4) from BGRA."""
    width, height = expected
    array = decode_raw_view(data, field, expected, channels)
    if channels == 1:
        return array.reshape(height, width).copy()
    return bgra_to_rgba(array.reshape(height, width, 4))


def decode_image(
    data: Bytes, content_type: str, field: str, expected: tuple[int, int], max_pixels: int
) -> np.ndarray:
    """An image part as RGBA (H, W, 4) uint8. Gray raw parts become opaque gray RGBA."""
    ctype = _base_type(content_type)
    if ctype == PNG:
        return decode_png(data, field, expected, max_pixels, "RGBA")
    if ctype == RAW_BGRA:
        return decode_raw(data, field, expected, 4)
    if ctype == RAW_GRAY:
        gray = decode_raw_view(data, field, expected, 1).reshape(expected[1], expected[0])
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGBA)
    raise UnsupportedMediaType(
        f"{field}: Content-Type {content_type!r} is not one of {', '.join(CODECS)}", field=field
    )


def decode_mask(
    data: Bytes, content_type: str, field: str, expected: tuple[int, int], max_pixels: int
) -> np.ndarray:
    """A mask part as (H, W) uint8, 255 = selected. PNG: grayscale; raw BGRA: its alpha."""
    ctype = _base_type(content_type)
    if ctype == PNG:
        return decode_png(data, field, expected, max_pixels, "L")
    if ctype == RAW_GRAY:
        return decode_raw(data, field, expected, 1)
    if ctype == RAW_BGRA:
        width, height = expected
        raw = decode_raw_view(data, field, expected, 4)
        return np.ascontiguousarray(raw.reshape(height, width, 4)[:, :, 3])
    raise UnsupportedMediaType(
        f"{field}: Content-Type {content_type!r} is not one of {', '.join(CODECS)}", field=field
    )


def _base_type(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def bgra_to_rgba(array: np.ndarray) -> np.ndarray:
    """A new contiguous RGBA array from BGRA (H, W, 4) uint8 (one pass, any strides)."""
    return cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)


def raw_response(data: Bytes, width: int, height: int) -> StreamingResponse:
    """A raw BGRA8 body with its size headers, sent as zero-copy slices (see RAW_SLICE)."""
    view = memoryview(data).cast("B")

    async def slices():
        for start in range(0, view.nbytes, RAW_SLICE):
            yield view[start : start + RAW_SLICE]

    headers = {
        "Content-Length": str(view.nbytes),
        "X-Width": str(width),
        "X-Height": str(height),
    }
    return StreamingResponse(slices(), media_type=RAW_BGRA, headers=headers)
