"""The one image decoding module: every PNG type and depth, JPEG, WebP, EXIF orientation and
the mask rule, with exact expected values (tests/png_samples.py builds the files by hand)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from png_samples import (
    all_samples,
    exif_orientation,
    expected_mask,
    luma,
    make_sample,
    write_png,
)

from backend.engine.image_decode import (
    ImageDecodeError,
    ImageTooLarge,
    NotAnImage,
    decode_file,
    mask_from_rgba,
    read_header,
)

SAMPLES = all_samples()
LIMIT = 1 << 24


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_every_png_type_and_depth_decodes_exactly(sample) -> None:
    rgba = decode_file(sample.data, "image", LIMIT)
    assert rgba.dtype == np.uint8 and rgba.shape == sample.rgba.shape
    assert np.array_equal(rgba, sample.rgba)
    assert np.array_equal(mask_from_rgba(rgba), sample.mask)


@pytest.mark.parametrize(
    ("color_type", "depth"), [(0, 2), (0, 16), (2, 16), (3, 4), (4, 8), (6, 16)]
)
def test_interlaced_png_decodes_like_the_plain_one(color_type: int, depth: int) -> None:
    sample = make_sample(color_type, depth, width=13, height=11)
    plain = decode_file(sample.data, "image", LIMIT)
    data = write_png(sample.samples, color_type, depth, palette=sample.palette, interlaced=True)
    assert data[28] == 1  # IHDR interlace method: Adam7
    assert np.array_equal(decode_file(data, "image", LIMIT), plain)
    assert np.array_equal(plain, sample.rgba)


def test_16_bit_grey_keeps_its_value() -> None:
    """The issue's example: 64x48 grey, depth 16, value v * 257 -> v (was 255 for every v > 0)."""
    values = np.arange(64 * 48).reshape(48, 64) % 256
    data = write_png(values * 257, 0, 16)
    rgba = decode_file(data, "mask", LIMIT, expected=(64, 48))
    assert np.array_equal(rgba[..., 0], values)
    assert np.array_equal(mask_from_rgba(rgba), values)


def test_mask_rule_alpha_when_transparent_else_luminance() -> None:
    white = np.full((64, 96, 4), 255, np.uint8)
    white[..., 3] = 0
    white[30:50, 56:76, 3] = 255
    mask = mask_from_rgba(white)
    assert mask.sum() == 255 * 400 and mask[30:50, 56:76].min() == 255
    opaque = np.dstack([np.full((4, 4, 3), (200, 10, 30), np.uint8), np.full((4, 4), 255)])
    assert np.array_equal(mask_from_rgba(opaque.astype(np.uint8)), luma(opaque[..., :3]))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("after_idat", [False, True])
def test_png_exif_orientation_matches_pillow(orientation: int, after_idat: bool) -> None:
    sample = make_sample(6, 8, width=12, height=8)
    samples = sample.rgba  # type 6 / 8 bit: the samples are the RGBA values
    data = write_png(samples, 6, 8, exif=exif_orientation(orientation), exif_after_idat=after_idat)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGBA"))
    header = read_header(data, "image")
    assert header.orientation == orientation
    assert header.size == (upright.shape[1], upright.shape[0])
    assert np.array_equal(decode_file(data, "image", LIMIT, expected=header.size), upright)


def test_orientation_is_applied_before_the_size_check() -> None:
    """120x80 stored, Orientation 6: the picture is 80x120 and only that size fits."""
    rgb = np.zeros((80, 120, 3), np.uint8)
    rgb[:10, :] = 255  # a white band along the stored top edge
    data = write_png(rgb, 2, 8, exif=exif_orientation(6))
    rgba = decode_file(data, "image", LIMIT, expected=(80, 120))
    assert rgba.shape == (120, 80, 4)
    assert rgba[:, -10:, :3].min() == 255 and rgba[:, :-10, :3].max() == 0  # now on the right
    with pytest.raises(ImageDecodeError, match="80x120 but the region is 120x80"):
        decode_file(data, "image", LIMIT, expected=(120, 80))


def _encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_jpeg_exif_orientation_matches_pillow() -> None:
    rgb = np.zeros((40, 64, 3), np.uint8)
    rgb[:, :16] = 255
    exif = Image.Exif()
    exif[0x0112] = 8
    data = _encoded(rgb, "JPEG", quality=95, exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGBA"))
    rgba = decode_file(data, "image", LIMIT, expected=(40, 64))
    assert np.array_equal(rgba, upright)


def test_webp_lossless_with_alpha_is_exact() -> None:
    rgba = make_sample(6, 8, width=16, height=8).rgba
    data = _encoded(rgba, "WEBP", lossless=True, exact=True)
    assert np.array_equal(decode_file(data, "image", LIMIT), rgba)
    assert np.array_equal(mask_from_rgba(decode_file(data, "mask", LIMIT)), expected_mask(rgba))


def test_refusals_name_the_field() -> None:
    with pytest.raises(NotAnImage, match="^control_0: not a PNG, JPEG or WebP"):
        decode_file(b"GIF89a......", "control_0", LIMIT)
    with pytest.raises(ImageDecodeError, match="^image: corrupt or truncated PNG"):
        decode_file(make_sample(2, 8).data[:-30], "image", LIMIT)
    with pytest.raises(ImageDecodeError, match="^image: corrupt or truncated JPEG"):
        decode_file(b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image", LIMIT)
    big = write_png(np.zeros((64, 64), np.uint8), 0, 8)
    with pytest.raises(ImageTooLarge, match="^mask: the PNG declares 64x64 = 4096 pixels"):
        decode_file(big, "mask", 4095)
