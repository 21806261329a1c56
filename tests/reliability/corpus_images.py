"""The image half of the bad-request corpus: corrupt, truncated and bomb PNGs, size mismatches.

``image_cases()`` yields (name, httpx kwargs for POST /v1/jobs, status, field) like
``corpus.bad_job_cases()``; ``valid_png_cases()`` are unusual PNGs that must be accepted.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
from api.harness import gray_part, job_files, job_params, png_part, raw_bgra, rgba_image
from PIL import Image

RGBA = rgba_image(64, 64)


def img2img(**overrides) -> dict:
    return job_params(mode="img2img", **overrides)


def post_job(params, **parts) -> dict:
    return {"files": job_files(params, **parts)}


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_bomb(width: int, height: int, zeros_mb: int = 8) -> bytes:
    """A PNG whose IHDR declares width x height and whose IDAT is megabytes of compressed zeros.

    Decoding it would need width*height*4 bytes; the file itself is a few kilobytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    packer = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    data = b"".join(packer.compress(block) for _ in range(zeros_mb)) + packer.flush()
    sig = b"\x89PNG\r\n\x1a\n"
    return sig + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def png_text_bomb() -> bytes:
    """A valid 64x64 PNG with a zTXt chunk that inflates to 64 MB of text."""
    good = png_part(RGBA)[1]
    text = zlib.compress(b"A" * (64 << 20), 9)
    ztxt = png_chunk(b"zTXt", b"parameters\x00\x00" + text)
    return good[:33] + ztxt + good[33:]  # right after the IHDR chunk


def png_bad_crc() -> bytes:
    good = bytearray(png_part(RGBA)[1])
    good[29] ^= 0xFF  # IHDR's CRC
    return bytes(good)


def png_of(mode: str, bits16: bool = False) -> bytes:
    """Valid but unusual PNG flavours (palette, gray+alpha, 16-bit): these must be accepted."""
    if bits16:
        image = Image.fromarray(np.full((64, 64), 40000, np.uint16))
    else:
        image = Image.fromarray(RGBA).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_cases() -> Iterator[tuple[str, dict, int | None, str | None]]:
    yield (
        "corrupt png",
        post_job(img2img(), image=("i.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png")),
        422,
        "image",
    )
    yield (
        "png truncated in IHDR",
        post_job(img2img(), image=("i.png", png_part(RGBA)[1][:20], "image/png")),
        422,
        "image",
    )
    yield (
        "png truncated in IDAT",
        post_job(img2img(), image=("i.png", png_part(RGBA)[1][:-40], "image/png")),
        422,
        "image",
    )
    yield (
        "png bad CRC",
        post_job(img2img(), image=("i.png", png_bad_crc(), "image/png")),
        422,
        "image",
    )
    yield "png empty", post_job(img2img(), image=("i.png", b"", "image/png")), 422, "image"
    yield (
        "png bomb 30000x30000",
        post_job(img2img(), image=("b.png", png_bomb(30000, 30000), "image/png")),
        413,
        "image",
    )
    yield (
        "png bomb 2^31-1 square",
        post_job(img2img(), image=("b.png", png_bomb(2**31 - 1, 2**31 - 1, 1), "image/png")),
        413,
        "image",
    )
    yield (
        "png declares 0x0",
        post_job(img2img(), image=("b.png", png_bomb(0, 0, 1), "image/png")),
        422,
        "image",
    )
    yield (
        "jpeg in png clothing",
        post_job(img2img(), image=("i.png", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/png")),
        422,
        "image",
    )
    yield (
        "image of another size",
        post_job(img2img(), image=raw_bgra(rgba_image(32, 64))),
        422,
        "image",
    )
    yield (
        "mask of another size",
        post_job(
            job_params(mode="inpaint"),
            image=raw_bgra(RGBA),
            mask=gray_part(np.zeros((32, 32), np.uint8)),
        ),
        422,
        "mask",
    )
    yield (
        "mask png of another size",
        post_job(
            job_params(mode="inpaint"),
            image=raw_bgra(RGBA),
            mask=png_part(np.zeros((65, 64), np.uint8), "m.png"),
        ),
        422,
        "mask",
    )
    yield (
        "control of another size",
        post_job(
            job_params(controls=[{"type": "canny", "image": "control_0"}]),
            control_0=raw_bgra(rgba_image(64, 8)),
        ),
        422,
        "control_0",
    )
    yield (
        "raw image one byte short",
        post_job(img2img(), image=("i", b"\x00" * (64 * 64 * 4 - 1), "image/x-raw-bgra8")),
        422,
        "image",
    )
    yield (
        "image as text/plain",
        post_job(img2img(), image=("i", b"hello", "text/plain")),
        415,
        "image",
    )
    yield (
        "image as svg",
        post_job(img2img(), image=("i.svg", b"<svg/>", "image/svg+xml")),
        415,
        "image",
    )


def valid_png_cases() -> Iterator[tuple[str, bytes]]:
    """Unusual but valid PNGs that must be accepted (positive controls for the codec)."""
    yield "palette", png_of("P")
    yield "gray+alpha", png_of("LA")
    yield "16-bit gray", png_of("I;16", bits16=True)
    yield "rgb", png_of("RGB")
    # libpng stops inflating text chunks at its 8 MB limit and the pixels are never near the
    # text: the bomb costs milliseconds, and the image is fine (it was refused before).
    yield "zTXt bomb (text never inflated)", png_text_bomb()
