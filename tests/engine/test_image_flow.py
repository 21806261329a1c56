"""The whole image side of one inpaint, with a deterministic fake 'model' in the middle."""

from __future__ import annotations

import cv2
import numpy as np

from backend.engine.compositing import (
    color_match,
    crop_mask,
    crop_rgba,
    flatten,
    make_layer,
    prefill,
    resize_mask,
    resize_rgb,
    trim_to_alpha,
)
from backend.engine.geometry import context_box, native_size, selection_bounds
from backend.engine.masks import composite_alpha, denoise_mask, mask_params

NATIVE = 64


def _canvas(height: int = 120, width: int = 160) -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([80 + xx * 0.5, 70 + yy * 0.6, 140 - xx * 0.2], axis=2) + rng.normal(
        0, 4, (height, width, 3)
    )
    image = np.empty((height, width, 4), np.uint8)
    image[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    image[..., 3] = 255
    return image


def _fake_denoise(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """New content (a flat teal) where the mask is, plus a colour cast everywhere, like a VAE."""
    out = (
        image.astype(np.float32) * (1 - mask[..., None])
        + np.array([40, 160, 150]) * mask[..., None]
    )
    out[..., 0] += 30
    out[..., 2] -= 15
    return np.clip(out, 0, 255).astype(np.uint8)


def _inpaint(region: np.ndarray, selection: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The engine's order of calls, with the fake model; returns the trimmed layer."""
    bounds = selection_bounds(selection)
    assert bounds is not None
    box = context_box(bounds, region.shape[1], region.shape[0])
    crop, crop_sel = crop_rgba(region, box), crop_mask(selection, box)
    filled = prefill(crop)
    grow, blur, feather = mask_params(bounds, None, None, None)
    width, height = native_size(box.width, box.height, NATIVE)
    repaint = denoise_mask(crop_sel, grow, blur)  # at crop scale: grow/blur are canvas px
    generated = _fake_denoise(
        resize_rgb(filled, width, height), resize_mask(repaint, width, height)
    )
    back = resize_rgb(generated, box.width, box.height)
    matched = color_match(back, crop, crop_sel, denoise=repaint)
    layer = make_layer(matched, composite_alpha(crop_sel, feather))
    trimmed, dx, dy = trim_to_alpha(layer)
    return trimmed, box.x + dx, box.y + dy


def test_inpaint_touches_nothing_outside_the_selection() -> None:
    region = _canvas()
    selection = np.zeros(region.shape[:2], np.uint8)
    cv2.ellipse(selection, (90, 60), (25, 15), 20, 0, 360, 255, -1)
    selection = cv2.GaussianBlur(selection, (0, 0), 2)  # a feathered selection from Krita
    layer, x, y = _inpaint(region, selection)
    result = flatten(region, layer, x, y)
    outside = selection == 0
    assert np.array_equal(result[outside], region[outside])  # bit-exact outside
    centre = result[60, 90, :3].astype(int)
    assert np.abs(centre - [40, 160, 150]).max() < 12  # new content inside, cast removed
    soft_edge = (selection > 30) & (selection < 220)
    alpha = np.zeros(selection.shape, np.uint8)
    alpha[y : y + layer.shape[0], x : x + layer.shape[1]] = layer[..., 3]
    assert np.any((alpha[soft_edge] > 0) & (alpha[soft_edge] < 255))


def test_outpaint_fills_transparent_pixels_of_the_selection() -> None:
    region = _canvas()
    region[:, 120:, 3] = 0  # the region runs off the painted canvas
    selection = np.zeros(region.shape[:2], np.uint8)
    selection[20:100, 100:160] = 255
    layer, x, y = _inpaint(region, selection)
    result = flatten(region, layer, x, y)
    assert np.all(result[25:95, 125:155, 3] == 255)  # the off-canvas part is now painted
    outside = selection == 0
    assert np.array_equal(result[outside], region[outside])
