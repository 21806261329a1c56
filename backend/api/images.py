"""Decode and encode the image parts of requests and responses, with size limits.

Codecs by Content-Type: ``image/png`` (any PNG; its declared size is checked in the IHDR chunk
before a single pixel is decoded, so a PNG bomb costs nothing) or the raw formats of
``backend.protocol`` (``RAW_BGRA``: width*height*4 bytes, ``RAW_GRAY``: width*height bytes).
Images come out as the engine wants them: RGBA (H, W, 4) uint8 or a mask (H, W) uint8.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from backend.api.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from backend.protocol import PNG, RAW_BGRA, RAW_GRAY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CODECS = (PNG, RAW_BGRA, RAW_GRAY)


def png_declared_size(data: bytes, field: str) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, without decoding anything."""
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


def decode_png(data: bytes, field: str, expected: tuple[int, int], max_pixels: int, mode: str):
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


def decode_raw(data: bytes, field: str, expected: tuple[int, int], channels: int) -> np.ndarray:
    width, height = expected
    need = width * height * channels
    if len(data) != need:
        raise Unprocessable(
            f"{field}: raw part has {len(data)} bytes; {width}x{height}x{channels} needs {need}",
            field=field,
        )
    array = np.frombuffer(data, dtype=np.uint8)
    if channels == 1:
        return array.reshape(height, width).copy()
    return bgra_to_rgba(array.reshape(height, width, 4))


def decode_image(
    data: bytes, content_type: str, field: str, expected: tuple[int, int], max_pixels: int
) -> np.ndarray:
    """An image part as RGBA (H, W, 4) uint8. Gray raw parts become opaque gray RGBA."""
    ctype = _base_type(content_type)
    if ctype == PNG:
        return decode_png(data, field, expected, max_pixels, "RGBA")
    if ctype == RAW_BGRA:
        return decode_raw(data, field, expected, 4)
    if ctype == RAW_GRAY:
        gray = decode_raw(data, field, expected, 1)
        return np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    raise UnsupportedMediaType(
        f"{field}: Content-Type {content_type!r} is not one of {', '.join(CODECS)}", field=field
    )


def decode_mask(
    data: bytes, content_type: str, field: str, expected: tuple[int, int], max_pixels: int
) -> np.ndarray:
    """A mask part as (H, W) uint8, 255 = selected. PNG: grayscale; raw BGRA: its alpha."""
    ctype = _base_type(content_type)
    if ctype == PNG:
        return decode_png(data, field, expected, max_pixels, "L")
    if ctype == RAW_GRAY:
        return decode_raw(data, field, expected, 1)
    if ctype == RAW_BGRA:
        return decode_raw(data, field, expected, 4)[:, :, 3].copy()
    raise UnsupportedMediaType(
        f"{field}: Content-Type {content_type!r} is not one of {', '.join(CODECS)}", field=field
    )


def _base_type(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def bgra_to_rgba(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[:, :, [2, 1, 0, 3]])
