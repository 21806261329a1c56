"""The image parts of requests: which codec a part's Content-Type (or its first bytes) picks,
and the API's status codes for images that cannot be used; plus raw responses.

Decoding itself is ``backend.engine.image_decode``, the one module the CLI uses too: PNG (every
colour type and bit depth), JPEG and WebP, upright by their EXIF orientation, the declared size
checked before any pixel is decoded (a PNG bomb costs nothing). Codecs by Content-Type:

* ``image/png``, ``image/jpeg``, ``image/webp`` or ``application/octet-stream``: an image file,
  its format told by its first bytes (a mislabelled file still decodes). These carry their
  size, so ``width``/``height`` may be left out of the params.
* ``RAW_BGRA`` (width*height*4 bytes) and ``RAW_GRAY`` (width*height bytes) of
  ``backend.protocol``: the plugin's fast path; the size must come from the params.

Images come out as the engine wants them: RGBA (H, W, 4) uint8, or a mask (H, W) uint8 by the
one mask rule (alpha when the image has transparency, else luminance) for every codec.
Parts may be any bytes-like object (the multipart reader hands out ``memoryview`` slices of the
request buffer); raw BGRA becomes RGBA in one ``cv2.cvtColor`` pass, the only copy made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from starlette.responses import StreamingResponse

from backend.api.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from backend.engine import image_decode
from backend.engine.image_decode import Bytes, ImageDecodeError, ImageTooLarge, NotAnImage
from backend.protocol import JPEG, PNG, RAW_BGRA, RAW_GRAY, WEBP

OCTET_STREAM = "application/octet-stream"
#: Content-Types of image files (decoded by their signature, whatever the label says).
FILE_TYPES = (PNG, JPEG, WEBP, "image/jpg", "image/pjpeg", "image/apng", OCTET_STREAM)
RAW_TYPES = (RAW_BGRA, RAW_GRAY)
CODECS = (PNG, JPEG, WEBP, OCTET_STREAM, RAW_BGRA, RAW_GRAY)
#: The OpenAPI ``encoding`` of every image part.
IMAGE_CONTENT_TYPES = ", ".join(CODECS)
#: Slice size of raw responses. One 16 MiB write makes asyncio's transport (Python 3.11)
#: buffer the rest and memmove it on every partial send: ~50 ms on loopback for 2048² where
#: 256 KiB slices take ~15 ms (measured; docs/benchmarks/README.md, "Transfer").
RAW_SLICE = 256 * 1024


def base_type(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_file_type(content_type: str) -> bool:
    """True when the part is an image file (it carries its own size)."""
    return base_type(content_type) in FILE_TYPES


def _check_codec(content_type: str, field: str) -> str:
    ctype = base_type(content_type)
    if ctype not in FILE_TYPES and ctype not in RAW_TYPES:
        raise UnsupportedMediaType(
            f"{field}: Content-Type {content_type!r} is not one of {', '.join(CODECS)}",
            field=field,
        )
    return ctype


@contextmanager
def api_errors(content_type: str) -> Iterator[None]:
    """The shared decoder's errors as the API's: 413 too many pixels, 415 an unlabelled part
    that is no image file, 422 anything else."""
    try:
        yield
    except ImageTooLarge as error:
        raise PayloadTooLarge(error.message, field=error.field) from error
    except NotAnImage as error:
        if base_type(content_type) == OCTET_STREAM:
            message = f"{error.message}; label raw pixels {RAW_BGRA} or {RAW_GRAY}"
            raise UnsupportedMediaType(message, field=error.field) from error
        raise Unprocessable(error.message, field=error.field) from error
    except ImageDecodeError as error:
        raise Unprocessable(error.message, field=error.field) from error


def file_size(data: Bytes, content_type: str, field: str) -> tuple[int, int] | None:
    """(width, height) an image-file part declares, upright (no pixel decoded); None for raw
    parts, which carry no size."""
    if _check_codec(content_type, field) in RAW_TYPES:
        return None
    with api_errors(content_type):
        return image_decode.read_header(data, field).size


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


def decode_image(
    data: Bytes,
    content_type: str,
    field: str,
    expected: tuple[int, int] | None,
    max_pixels: int,
) -> np.ndarray:
    """An image part as RGBA (H, W, 4) uint8. ``expected`` (width, height) is checked when
    given (raw parts need it); gray raw parts become opaque gray RGBA."""
    ctype = _check_codec(content_type, field)
    if ctype in FILE_TYPES:
        with api_errors(content_type):
            return image_decode.decode_file(data, field, max_pixels, expected)
    if expected is None:
        raise Unprocessable(
            "width: required (a raw image part does not carry its size)", field="width"
        )
    width, height = expected
    if ctype == RAW_BGRA:
        raw = decode_raw_view(data, field, expected, 4).reshape(height, width, 4)
        return image_decode.bgra_to_rgba(raw)
    gray = decode_raw_view(data, field, expected, 1).reshape(height, width)
    return image_decode.gray_to_rgba(gray)


def decode_mask(
    data: Bytes,
    content_type: str,
    field: str,
    expected: tuple[int, int] | None,
    max_pixels: int,
) -> np.ndarray:
    """A mask part as (H, W) uint8, 255 = selected, by the one rule for every codec: the
    alpha channel when the image has transparency, else its luminance (raw gray: itself)."""
    if _check_codec(content_type, field) == RAW_GRAY and expected is not None:
        width, height = expected
        return decode_raw_view(data, field, expected, 1).reshape(height, width).copy()
    return image_decode.mask_from_rgba(
        decode_image(data, content_type, field, expected, max_pixels)
    )


bgra_to_rgba = image_decode.bgra_to_rgba


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
