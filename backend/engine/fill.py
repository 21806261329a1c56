"""Outpaint prefill: give transparent pixels plausible colours before denoising.

The model denoises an RGB image; transparent parts of the region (off the painted canvas)
must hold something. Filling them with the colours of the nearby known pixels makes the
model continue the picture instead of painting a black or grey frame. Opaque pixels are
never changed; semi-transparent ones are their colour over the fill.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from backend.engine.errors import InvalidRequest
from backend.engine.image_checks import check_image

FILL_METHODS: tuple[str, ...] = ("auto", "border", "blur", "neutral")
#: A pixel with at least this alpha counts as known (a source for border and blur fills).
KNOWN_ALPHA = 128
NEUTRAL_GREY = 128.0
NEUTRAL_NOISE = 24.0  # std of the noise on the neutral fill, levels
AUTO_NOISE = 6.0  # std of the noise added over the pyramid fill in "auto"


def _border_fill(rgb: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Every pixel takes the colour of its nearest known pixel (edge extension)."""
    result = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    indices = np.asarray(result)
    return rgb[indices[0], indices[1]].astype(np.float32)


def _pyramid_fill(rgb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Push-pull fill: average the known colours down a pyramid (premultiplied by their
    weight), then fill each level's gaps from the smoother level above it."""
    # 1. Push: premultiplied colour and weight, halved until one pixel is left.
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    color = rgb.astype(np.float32) * weight[..., None]
    w = weight.astype(np.float32)
    while True:
        levels.append((color, w))
        h, wd = w.shape
        if h == 1 and wd == 1:
            break
        size = (max(1, (wd + 1) // 2), max(1, (h + 1) // 2))
        color = cv2.resize(color, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 3)
        w = cv2.resize(w, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0])
    # 2. Top: the mean known colour.
    color, w = levels[-1]
    filled = color / np.maximum(w, 1e-6)[..., None]
    # 3. Pull: at each finer level, known colour where the weight is high, else the coarse fill.
    for color, w in reversed(levels[:-1]):
        h, wd = w.shape
        up = cv2.resize(filled, (wd, h), interpolation=cv2.INTER_LINEAR).reshape(h, wd, 3)
        strength = np.clip(w * 8.0, 0.0, 1.0)[..., None]  # partly known cells are trusted
        mean = color / np.maximum(w, 1e-6)[..., None]
        filled = mean * strength + up * (1.0 - strength)
    return filled


def _noise(shape: tuple[int, int], std: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, std, size=(*shape, 3)).astype(np.float32)


def prefill(image: np.ndarray, method: str = "auto", seed: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``image`` (RGBA) with its transparent pixels filled.

    Methods: ``border`` (nearest known pixel), ``blur`` (pyramid push-pull: smooth blend of
    the known colours), ``neutral`` (mid grey with noise), ``auto`` (pyramid + a little noise
    when some pixels are known, neutral otherwise). Noise is seeded by ``seed``. Pixels with
    alpha 255 are returned unchanged; alpha a < 255 gives ``rgb * a + fill * (1 - a)``.
    """
    # 1. Check inputs.
    check_image("image", image, channels=(4,))
    if method not in FILL_METHODS:
        raise InvalidRequest("inpaint.fill", method, f"expected one of {list(FILL_METHODS)}")
    rgb = image[..., :3]
    alpha = image[..., 3].astype(np.float32) / 255.0
    if np.all(image[..., 3] == 255):
        return rgb.copy()
    known = image[..., 3] >= KNOWN_ALPHA
    shape = alpha.shape
    # 2. The fill under the transparent pixels.
    if method == "auto":
        method = "auto-pyramid" if known.any() else "neutral"
    if method in ("border", "blur") and not known.any():
        method = "neutral"
    if method == "border":
        fill = _border_fill(rgb, known)
    elif method == "blur":
        fill = _pyramid_fill(rgb, alpha * known)
    elif method == "auto-pyramid":
        fill = _pyramid_fill(rgb, alpha * known) + _noise(shape, AUTO_NOISE, seed)
    else:
        fill = np.full((*shape, 3), NEUTRAL_GREY, np.float32) + _noise(shape, NEUTRAL_NOISE, seed)
    # 3. Known colour over the fill; opaque pixels copied exactly.
    a = alpha[..., None]
    out = np.round(np.clip(rgb.astype(np.float32) * a + fill * (1.0 - a), 0.0, 255.0))
    out = out.astype(np.uint8)
    opaque = image[..., 3] == 255
    out[opaque] = rgb[opaque]
    return out
