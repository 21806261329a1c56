"""Decode the images artists send into the engine's arrays, with one rule set for every entry
point: the HTTP API's parts (backend/api/images.py) and the CLI's files
(backend/commands/generate.py) both call this module.

* **Formats**, told apart by their first bytes (never by a name or a label): PNG, JPEG, WebP.
  PNG is decoded by libpng (through OpenCV), every colour type and bit depth: grey 1/2/4/8/16,
  RGB 8/16, palette 1/2/4/8, grey+alpha 8/16, RGBA 8/16, interlaced or not. Low bit depths are
  scaled to 8 bits exactly (2-bit 1 -> 85); 16-bit samples are rounded to 8 bits
  (``round(v * 255 / 65535)``, so ``v * 257 -> v``); a ``tRNS`` chunk becomes alpha for every
  colour type (libpng skips it for grey: done here). JPEG and WebP are decoded by Pillow.
* **EXIF orientation** (PNG ``eXIf`` chunk, JPEG/WebP EXIF) is applied first, exactly as
  Pillow's ``ImageOps.exif_transpose`` would: sizes are checked on the upright image.
* **Size**: the declared pixel count is checked against ``max_pixels`` from the header, before a
  single pixel is decoded (a decompression bomb costs nothing).
* **Masks** (``mask_from_rgba``): the alpha channel when the image has transparency (some alpha
  below 255), else the luminance (ITU-R 601 luma in Pillow's integer form, exact for grey).
  255 = fully selected.

Everything comes out as RGBA (H, W, 4) uint8 with straight alpha; raw BGRA/grey buffers (the
plugin's layout) go through ``bgra_to_rgba`` / ``gray_to_rgba``.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TypeAlias

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from backend.engine.errors import EngineError, InvalidRequest

Bytes: TypeAlias = "bytes | bytearray | memoryview"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
FORMATS = ("PNG", "JPEG", "WEBP")
KNOWN = "a PNG, JPEG or WebP file"
EXIF_ORIENTATION = 0x0112
LUMA_BAND = 512  # rows per band of the luminance computation
#: EXIF orientation -> numpy transform of an (H, W, C) array: the same picture as Pillow's
#: ImageOps.exif_transpose (2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 cw,
#: 7 transverse, 8 rotate 90 ccw).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


class ImageDecodeError(InvalidRequest):
    """An image that cannot be used: ``field`` names the part or file. 422 on the API."""

    def __init__(self, field: str, reason: str) -> None:
        EngineError.__init__(self, f"{field}: {reason}", field=field)
        self.value = None


class ImageTooLarge(ImageDecodeError):
    """The image declares more pixels than the server allows (413 on the API)."""


class NotAnImage(ImageDecodeError):
    """The bytes are none of the formats we read (415 on the API when unlabelled)."""


@dataclass(frozen=True)
class Header:
    """What an image file says about itself, read without decoding a pixel."""

    format: str  # PNG | JPEG | WEBP
    width: int  # as stored
    height: int
    orientation: int = 1  # EXIF orientation 1..8 (1 = upright)
    depth: int = 8  # PNG bit depth
    color_type: int = 6  # PNG colour type
    trns: bytes | None = None  # PNG tRNS chunk body

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image (after the EXIF orientation)."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def sniff(data: Bytes) -> str | None:
    """ "PNG", "JPEG" or "WEBP" from the first bytes, or None."""
    head = bytes(data[:16])
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(JPEG_SIGNATURE):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _orientation_of(exif: bytes | None) -> int:
    if not exif:
        return 1
    try:
        value = Image.Exif()
        value.load(exif)
        orientation = int(value.get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError, struct.error, KeyError):
        return 1  # unreadable EXIF: the picture as stored
    return orientation if orientation in range(1, 9) else 1


def _png_header(data: Bytes, field: str) -> Header:
    """IHDR, and the tRNS and eXIf chunks found by walking the chunk list (nothing inflated)."""
    head = bytes(data[:33])
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise ImageDecodeError(field, "corrupt or truncated PNG (no IHDR header)")
    width, height, depth, color_type = struct.unpack(">IIBB", head[16:26])
    trns = exif = None
    view = memoryview(data)
    pos, end = 33, len(view)
    while pos + 8 <= end:
        length = struct.unpack(">I", view[pos : pos + 4])[0]
        kind = bytes(view[pos + 4 : pos + 8])
        body = view[pos + 8 : pos + 8 + length]
        if kind == b"tRNS":
            trns = bytes(body)
        elif kind == b"eXIf":
            exif = bytes(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    return Header("PNG", width, height, _orientation_of(exif), depth, color_type, trns)


def _detail(error: Exception) -> str:
    """A decoder's own words, when they say something (not Pillow's object reprs)."""
    if isinstance(error, UnidentifiedImageError) or " object at 0x" in str(error):
        return ""
    return f" ({error})"


def read_header(data: Bytes, field: str) -> Header:
    """The file's format, stored size and orientation (no pixel decoded)."""
    kind = sniff(data)
    if kind is None:
        raise NotAnImage(field, f"not {KNOWN} (unknown first bytes)")
    if kind == "PNG":
        return _png_header(data, field)
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            width, height = image.size
            exif = image.info.get("exif")
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(field, f"the {kind} is too large to decode ({error})") from error
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise ImageDecodeError(field, f"corrupt or truncated {kind}{_detail(error)}") from error
    return Header(kind, width, height, _orientation_of(exif))


def check_pixels(header: Header, field: str, max_pixels: int) -> None:
    width, height = header.width, header.height
    if width < 1 or height < 1:
        raise ImageDecodeError(field, f"the {header.format} declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            field,
            f"the {header.format} declares {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels}",
        )


def _to_uint8(samples: np.ndarray) -> np.ndarray:
    """16-bit samples rounded to 8 bits (v * 257 -> v); 8-bit ones as they are."""
    if samples.dtype == np.uint8:
        return samples
    wide = samples.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _grey_alpha(grey: np.ndarray, header: Header) -> np.ndarray | None:
    """A grey PNG's tRNS as alpha (libpng leaves it out): 0 where the sample equals it."""
    if header.color_type != 0 or header.trns is None or len(header.trns) < 2:
        return None
    key = struct.unpack(">H", header.trns[:2])[0]
    if header.depth < 8:  # libpng scaled the samples to 8 bits: scale the key the same way
        key = (key & ((1 << header.depth) - 1)) * (255 // ((1 << header.depth) - 1))
    return np.where(grey == key, 0, 255).astype(np.uint8)


def _decode_png(data: Bytes, field: str, header: Header) -> np.ndarray:
    samples = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if samples is None or samples.shape[:2] != (header.height, header.width):
        raise ImageDecodeError(field, "corrupt or truncated PNG (libpng could not decode it)")
    if samples.ndim == 2:
        alpha = _grey_alpha(samples, header)
        grey = _to_uint8(samples)
        rgba = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGBA)
        if alpha is not None:
            rgba[..., 3] = alpha
        return rgba
    pixels = _to_uint8(samples)
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGBA)
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)


def _decode_pillow(data: Bytes, field: str, header: Header) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=[header.format]) as image:
            image.load()
            rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(field, f"the {header.format} is too large ({error})") from error
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        reason = f"corrupt or truncated {header.format}{_detail(error)}"
        raise ImageDecodeError(field, reason) from error
    return rgba


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (H, W[, C]) turned upright for an EXIF orientation (1 = as is)."""
    transform = _ORIENT.get(orientation)
    if transform is None:
        return pixels
    squeeze = pixels.ndim == 2
    turned = transform(pixels[..., None] if squeeze else pixels)
    turned = np.ascontiguousarray(turned)
    return turned[..., 0] if squeeze else turned


def decode_file(
    data: Bytes, field: str, max_pixels: int, expected: tuple[int, int] | None = None
) -> np.ndarray:
    """A PNG, JPEG or WebP file as upright RGBA (H, W, 4) uint8.

    ``expected`` (width, height), when given, must equal the upright size (checked before
    decoding). Raises ImageDecodeError (or its ImageTooLarge / NotAnImage) naming ``field``.
    """
    # 1. Header only: format, pixel count, upright size.
    header = read_header(data, field)
    check_pixels(header, field, max_pixels)
    if expected is not None:
        check_size(field, header.size, expected)
    # 2. Decode, then turn upright.
    if header.format == "PNG":
        rgba = _decode_png(data, field, header)
    else:
        rgba = _decode_pillow(data, field, header)
    return orient(rgba, header.orientation)


def check_size(field: str, size: tuple[int, int], expected: tuple[int, int]) -> None:
    if tuple(size) != tuple(expected):
        raise ImageDecodeError(
            field,
            f"the image is {size[0]}x{size[1]} but the region is {expected[0]}x{expected[1]}",
        )


def bgra_to_rgba(array: np.ndarray) -> np.ndarray:
    """A new contiguous RGBA array from BGRA (H, W, 4) uint8 (one pass, any strides)."""
    return cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)


def gray_to_rgba(array: np.ndarray) -> np.ndarray:
    """Opaque grey RGBA from (H, W) uint8."""
    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2RGBA)


def has_transparency(rgba: np.ndarray) -> bool:
    return bool(rgba[..., 3].min() < 255)


def luminance(rgba: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of RGB(A) uint8 as (H, W) uint8, in Pillow's exact integer form
    ``(19595 R + 38470 G + 7471 B + 32768) >> 16`` (grey keeps its value; OpenCV's SIMD
    paths round differently from one image width to another)."""
    out = np.empty(rgba.shape[:2], np.uint8)
    for top in range(0, rgba.shape[0], LUMA_BAND):  # bands: bounded temporaries
        band = rgba[top : top + LUMA_BAND]
        total = band[..., 0].astype(np.uint32) * 19595
        total += band[..., 1].astype(np.uint32) * 38470
        total += band[..., 2].astype(np.uint32) * 7471
        total += 32768
        out[top : top + LUMA_BAND] = total >> 16
    return out


def mask_from_rgba(rgba: np.ndarray) -> np.ndarray:
    """The selection an image means, (H, W) uint8, 255 = selected: its alpha when it has
    transparency, else its luminance (grey pixels keep their value)."""
    if has_transparency(rgba):
        return np.ascontiguousarray(rgba[..., 3])
    return luminance(rgba)
