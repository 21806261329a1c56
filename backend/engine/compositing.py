"""Cropping, resizing and layering pixels: the image plumbing around one denoise.

Images are (H, W, 4) uint8 RGBA with straight alpha (or (H, W, 3) RGB where stated); masks
are (H, W) uint8 with 255 = selected. ``prefill`` (fill.py) and ``color_match``
(color_match.py) live in their own modules and are re-exported here, so the engine imports
every compositing step from one place.
"""

from __future__ import annotations

import cv2
import numpy as np

from backend.engine.color_match import color_match
from backend.engine.errors import InvalidRequest
from backend.engine.fill import FILL_METHODS, prefill
from backend.engine.geometry import Box
from backend.engine.image_checks import check_image, check_mask, check_size

__all__ = [
    "FILL_METHODS",
    "color_match",
    "crop_mask",
    "crop_rgba",
    "flatten",
    "has_transparency",
    "make_layer",
    "prefill",
    "resize_cover",
    "resize_mask",
    "resize_rgb",
    "resize_rgba",
    "trim_to_alpha",
]


def _check_box(box: Box) -> None:
    if box.width <= 0 or box.height <= 0:
        raise InvalidRequest("box", box, "the box is empty")


def _crop(array: np.ndarray, box: Box) -> np.ndarray:
    out = np.zeros((box.height, box.width, *array.shape[2:]), dtype=array.dtype)
    inside = box.clip(array.shape[1], array.shape[0])
    if inside is not None:
        src = array[inside.y : inside.bottom, inside.x : inside.right]
        dy, dx = inside.y - box.y, inside.x - box.x
        out[dy : dy + inside.height, dx : dx + inside.width] = src
    return out


def crop_rgba(image: np.ndarray, box: Box) -> np.ndarray:
    """The ``box`` part of an RGBA image; parts of the box outside the image are transparent."""
    check_image("image", image, channels=(4,))
    _check_box(box)
    return _crop(image, box)


def crop_mask(mask: np.ndarray, box: Box) -> np.ndarray:
    """The ``box`` part of a mask; parts of the box outside the mask are 0 (unselected)."""
    check_mask("mask", mask, allow_float=True)
    _check_box(box)
    return _crop(mask, box)


def _interpolation(src_w: int, src_h: int, width: int, height: int, smooth: int) -> int:
    return cv2.INTER_AREA if width * height <= src_w * src_h else smooth


def resize_rgba(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize RGBA in premultiplied alpha (no dark fringes from transparent pixels): area
    averaging when shrinking, Lanczos when enlarging."""
    check_image("image", image, channels=(4,))
    width, height = check_size("width", width), check_size("height", height)
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image.copy()
    # 1. Premultiply.
    rgba = image.astype(np.float32) / 255.0
    rgba[..., :3] *= rgba[..., 3:4]
    # 2. Resize.
    flags = _interpolation(src_w, src_h, width, height, cv2.INTER_LANCZOS4)
    out = np.clip(cv2.resize(rgba, (width, height), interpolation=flags), 0.0, 1.0)
    # 3. Un-premultiply where there is coverage.
    alpha = out[..., 3:4]
    rgb = np.where(alpha > 1e-6, out[..., :3] / np.maximum(alpha, 1e-6), 0.0)
    out[..., :3] = np.clip(rgb, 0.0, 1.0)
    return np.round(out * 255.0).astype(np.uint8)


def resize_cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGBA scaled to cover ``width`` x ``height`` with its aspect ratio kept, the overflow
    cropped evenly from both sides (a control image of another size than the region)."""
    check_image("image", image, channels=(4,))
    width, height = check_size("width", width), check_size("height", height)
    src_h, src_w = image.shape[:2]
    scale = max(width / src_w, height / src_h)
    scaled_w, scaled_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    scaled = resize_rgba(image, scaled_w, scaled_h)
    left, top = (scaled_w - width) // 2, (scaled_h - height) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize RGB uint8: area averaging when shrinking, Lanczos when enlarging."""
    check_image("image", image, channels=(3,))
    width, height = check_size("width", width), check_size("height", height)
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image.copy()
    flags = _interpolation(src_w, src_h, width, height, cv2.INTER_LANCZOS4)
    return cv2.resize(image, (width, height), interpolation=flags)


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a mask (uint8 or float32, dtype kept): area when shrinking, bilinear when
    enlarging (Lanczos would ring: a mask must stay in range and monotonic at its edge).
    Zero stays exactly zero far from the selection."""
    check_mask("mask", mask, allow_float=True)
    width, height = check_size("width", width), check_size("height", height)
    src_h, src_w = mask.shape[:2]
    if (src_w, src_h) == (width, height):
        return mask.copy()
    flags = _interpolation(src_w, src_h, width, height, cv2.INTER_LINEAR)
    return cv2.resize(mask, (width, height), interpolation=flags)


def has_transparency(
    image: np.ndarray, mask: np.ndarray | None = None, threshold: int = 250
) -> bool:
    """True when any pixel (inside ``mask`` when given) has alpha below ``threshold``: the
    region needs outpainting there."""
    check_image("image", image, channels=(4,))
    alpha = image[..., 3]
    if mask is not None:
        check_mask("mask", mask, shape=alpha.shape, allow_float=True)
        return bool(np.any((alpha < threshold) & (mask > 0)))
    return bool(np.any(alpha < threshold))


def make_layer(generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8 from generated RGB(A) pixels and a float alpha in [0, 1]:
    alpha = round(alpha * 255); RGB is zeroed where alpha is 0."""
    check_image("generated", generated)
    check_mask("alpha", alpha, shape=generated.shape[:2], allow_float=True)
    a8 = (
        alpha
        if alpha.dtype == np.uint8
        else np.round(np.clip(alpha, 0, 1) * 255.0).astype(np.uint8)
    )
    layer = np.empty((*generated.shape[:2], 4), dtype=np.uint8)
    layer[..., :3] = generated[..., :3]
    layer[..., 3] = a8
    layer[a8 == 0, :3] = 0
    return layer


def trim_to_alpha(layer: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Crop a layer to its non-transparent pixels: (pixels, x offset, y offset).

    A fully transparent layer becomes one transparent pixel at (0, 0) (a layer is never empty).
    """
    check_image("layer", layer, channels=(4,))
    visible = layer[..., 3] > 0
    rows = np.flatnonzero(visible.any(axis=1))
    if rows.size == 0:
        return np.zeros((1, 1, 4), dtype=np.uint8), 0, 0
    cols = np.flatnonzero(visible.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return layer[top:bottom, left:right].copy(), left, top


def flatten(base_rgba: np.ndarray, layer_rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """``layer_rgba`` placed at (x, y) over ``base_rgba`` (Porter-Duff "over", straight alpha).
    Returns a new image the size of the base; parts of the layer outside it are dropped."""
    check_image("base_rgba", base_rgba, channels=(4,))
    check_image("layer_rgba", layer_rgba, channels=(4,))
    out = base_rgba.copy()
    placed = Box(int(x), int(y), layer_rgba.shape[1], layer_rgba.shape[0])
    inside = placed.clip(base_rgba.shape[1], base_rgba.shape[0])
    if inside is None:
        return out
    src = (
        layer_rgba[
            inside.y - placed.y : inside.bottom - placed.y,
            inside.x - placed.x : inside.right - placed.x,
        ].astype(np.float32)
        / 255.0
    )
    dst = out[inside.y : inside.bottom, inside.x : inside.right].astype(np.float32) / 255.0
    a_src, a_dst = src[..., 3:4], dst[..., 3:4]
    a_out = a_src + a_dst * (1.0 - a_src)
    rgb = src[..., :3] * a_src + dst[..., :3] * a_dst * (1.0 - a_src)
    rgb = np.where(a_out > 1e-6, rgb / np.maximum(a_out, 1e-6), 0.0)
    merged = np.concatenate([rgb, a_out], axis=2)
    out[inside.y : inside.bottom, inside.x : inside.right] = np.round(
        np.clip(merged, 0.0, 1.0) * 255.0
    ).astype(np.uint8)
    return out
