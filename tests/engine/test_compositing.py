from __future__ import annotations

import numpy as np
import pytest

from backend.engine.compositing import (
    crop_mask,
    crop_rgba,
    flatten,
    has_transparency,
    make_layer,
    prefill,
    resize_mask,
    resize_rgb,
    resize_rgba,
    trim_to_alpha,
)
from backend.engine.errors import InvalidRequest
from backend.engine.geometry import Box


def _gradient(height: int = 48, width: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 4), np.uint8)
    image[..., 0] = (xx * 255 // max(1, width - 1)).astype(np.uint8)
    image[..., 1] = (yy * 255 // max(1, height - 1)).astype(np.uint8)
    image[..., 2] = 90
    image[..., 3] = 255
    return image


def test_crop_rgba_outside_is_transparent() -> None:
    image = _gradient()
    crop = crop_rgba(image, Box(-4, 40, 10, 12))
    assert crop.shape == (12, 10, 4)
    assert np.all(crop[:, :4] == 0)  # left of the image
    assert np.all(crop[8:, :] == 0)  # below it
    assert np.array_equal(crop[:8, 4:], image[40:48, 0:6])


def test_crop_mask_outside_is_unselected() -> None:
    mask = np.full((10, 10), 255, np.uint8)
    crop = crop_mask(mask, Box(5, 5, 10, 10))
    assert crop.sum() == 25 * 255 and np.all(crop[5:, :] == 0)


def test_resize_rgba_no_dark_fringe() -> None:
    image = np.zeros((32, 32, 4), np.uint8)
    image[:, :16] = (255, 255, 255, 255)  # white, next to fully transparent black
    for size in ((16, 16), (80, 80), (50, 20)):
        out = resize_rgba(image, *size)
        assert out.shape == (size[1], size[0], 4)
        visible = out[..., 3] > 8
        # colour of every visible pixel stays white: nothing of the transparent black bleeds in
        assert out[visible][:, :3].min() >= 250


def test_resize_rgb_and_mask_shapes_and_ranges() -> None:
    rgb = _gradient()[..., :3].copy()
    assert resize_rgb(rgb, 128, 96).shape == (96, 128, 3)
    assert resize_rgb(rgb, 16, 12).shape == (12, 16, 3)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    big = resize_mask(mask, 80, 80)
    assert big.dtype == np.uint8 and big[0, 0] == 0 and big[40, 40] == 255
    soft = resize_mask(mask.astype(np.float32) / 255, 20, 20)
    assert soft.dtype == np.float32 and 0.0 <= soft.min() and soft.max() <= 1.0


def test_has_transparency_inside_mask_only() -> None:
    image = _gradient()
    assert not has_transparency(image)
    image[0:4, 0:4, 3] = 0
    assert has_transparency(image)
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[20:30, 20:30] = 255
    assert not has_transparency(image, mask)
    mask[2, 2] = 255
    assert has_transparency(image, mask)
    with pytest.raises(InvalidRequest, match="mask"):
        has_transparency(image, np.zeros((5, 5), np.uint8))


@pytest.mark.parametrize("method", ["auto", "border", "blur", "neutral"])
def test_prefill_keeps_opaque_and_fills_transparent(method: str) -> None:
    image = _gradient()
    image[:, 40:, 3] = 0  # right side off-canvas
    image[:, 40:, :3] = 0
    image[5, 5, 3] = 100  # one semi-transparent pixel
    out = prefill(image, method)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    opaque = image[..., 3] == 255
    assert np.array_equal(out[opaque], image[..., :3][opaque])
    filled = out[:, 40:].astype(int)
    assert filled.max() > 0  # not left black
    if method in ("border", "blur", "auto"):
        # continues the picture: the fill next to the edge is close to the edge colour
        near = out[:, 40].astype(int)
        edge = image[:, 39, :3].astype(int)
        assert np.abs(near - edge).mean() < 25
    if method == "border":
        assert np.array_equal(out[:, 63], image[:, 39, :3])


def test_prefill_without_known_pixels_is_neutral_grey() -> None:
    image = np.zeros((32, 32, 4), np.uint8)
    out = prefill(image, "auto")
    assert 110 < out.mean() < 146 and out.std() > 5  # grey with noise
    assert np.array_equal(out, prefill(image, "auto"))  # deterministic


def test_prefill_rejects_unknown_method() -> None:
    with pytest.raises(InvalidRequest) as info:
        prefill(_gradient(), "magic")
    assert info.value.field == "inpaint.fill"


def test_make_layer_and_trim() -> None:
    rgb = np.full((20, 30, 3), 200, np.uint8)
    alpha = np.zeros((20, 30), np.float32)
    alpha[5:10, 8:12] = 1.0
    alpha[5, 8] = 0.5
    layer = make_layer(rgb, alpha)
    assert layer.shape == (20, 30, 4)
    assert layer[5, 8, 3] == 128 and layer[6, 9, 3] == 255
    assert np.all(layer[alpha == 0] == 0)
    trimmed, x, y = trim_to_alpha(layer)
    assert (x, y) == (8, 5) and trimmed.shape == (5, 4, 4)
    empty, ex, ey = trim_to_alpha(np.zeros((4, 4, 4), np.uint8))
    assert empty.shape == (1, 1, 4) and (ex, ey) == (0, 0) and empty.max() == 0
    with pytest.raises(InvalidRequest, match="alpha"):
        make_layer(rgb, np.zeros((3, 3), np.float32))


def test_flatten_over() -> None:
    base = np.zeros((10, 10, 4), np.uint8)
    base[...] = (0, 0, 255, 255)
    layer = np.zeros((4, 4, 4), np.uint8)
    layer[...] = (255, 0, 0, 255)
    layer[0, 0, 3] = 0
    layer[1, 1, 3] = 128
    out = flatten(base, layer, 8, 8)  # partly outside: clipped
    assert np.array_equal(out[8, 9], [255, 0, 0, 255])
    assert np.array_equal(out[8, 8], [0, 0, 255, 255])  # transparent pixel: base shows
    assert abs(int(out[9, 9, 0]) - 128) <= 1  # half alpha: half red over blue
    out = flatten(base, layer, 0, 0)
    assert abs(int(out[1, 1, 0]) - 128) <= 1 and abs(int(out[1, 1, 2]) - 127) <= 1
    assert np.array_equal(out[5:, 5:], base[5:, 5:])
    # over a transparent base the layer's colour is kept, not darkened
    clear = flatten(np.zeros((4, 4, 4), np.uint8), layer, 0, 0)
    assert np.array_equal(clear[1, 1], [255, 0, 0, 128])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 4), np.float32), np.zeros((8, 8), np.uint8)],
)
def test_rgba_functions_reject_bad_images(bad: np.ndarray) -> None:
    with pytest.raises(InvalidRequest) as info:
        crop_rgba(bad, Box(0, 0, 2, 2))
    assert info.value.field == "image"
    with pytest.raises(InvalidRequest):
        resize_rgba(bad, 4, 4)
    with pytest.raises(InvalidRequest):
        prefill(bad)
