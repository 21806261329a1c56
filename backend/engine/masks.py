"""The two masks of an inpaint: what the model repaints and how the result is blended in.

* ``denoise_mask`` is *grown* and blurred past the selection edge, so the model repaints a
  band of the surroundings and the new content joins the old without a seam.
* ``composite_alpha`` is the opposite: shrunk and feathered *inside* the selection and then
  multiplied by the selection's own softness, so the layer is exactly transparent wherever
  the artist did not select (their pixels stay untouched) and soft selections blend softly.

Automatic sizes (``mask_params``), with ``s = sqrt(selection width x height)`` in px::

    grow    = clamp(round(0.05 * s), 4, 48)
    blur    = clamp(round(0.04 * s), 4, 32)
    feather = clamp(round(0.03 * s), 2, 24)

so a 64 px selection gets grow 4 / blur 4 / feather 2 and a 512 px one 26 / 20 / 15.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from backend.engine.errors import InvalidRequest
from backend.engine.geometry import Box
from backend.engine.image_checks import check_mask, mask_to_float

GROW_FACTOR, GROW_RANGE = 0.05, (4, 48)
BLUR_FACTOR, BLUR_RANGE = 0.04, (4, 32)
FEATHER_FACTOR, FEATHER_RANGE = 0.03, (2, 24)
MAX_PX = 512


def _scaled(size: float, factor: float, bounds: tuple[int, int]) -> int:
    return int(min(bounds[1], max(bounds[0], round(size * factor))))


def _check_px(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidRequest(field, value, "expected an integer number of pixels")
    if not 0 <= value <= MAX_PX:
        raise InvalidRequest(field, value, f"expected 0..{MAX_PX} px")
    return int(value)


def mask_params(
    bounds: Box, grow: int | None, blur: int | None, feather: int | None
) -> tuple[int, int, int]:
    """(grow, blur, feather) in px; each None is filled from the selection size (see above)."""
    if bounds.width <= 0 or bounds.height <= 0:
        raise InvalidRequest("bounds", bounds, "the selection bounds are empty")
    size = math.sqrt(bounds.width * bounds.height)
    grow = _scaled(size, GROW_FACTOR, GROW_RANGE) if grow is None else grow
    blur = _scaled(size, BLUR_FACTOR, BLUR_RANGE) if blur is None else blur
    feather = _scaled(size, FEATHER_FACTOR, FEATHER_RANGE) if feather is None else feather
    return (
        _check_px("inpaint.grow", grow),
        _check_px("inpaint.blur", blur),
        _check_px("inpaint.feather", feather),
    )


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def denoise_mask(mask: np.ndarray, grow: int, blur: int) -> np.ndarray:
    """float32 (H, W) in [0, 1]: the selection dilated by ``grow`` px, then Gaussian-blurred
    over about ``blur`` px; never below the selection itself (selected pixels are always
    repainted at least as much as they are selected)."""
    # 1. Check inputs.
    check_mask("mask", mask, allow_float=True)
    grow = _check_px("inpaint.grow", grow)
    blur = _check_px("inpaint.blur", blur)
    soft = mask_to_float(mask)
    # 2. Grey dilation keeps soft selections soft.
    grown = cv2.dilate(soft, _disk(grow)) if grow > 0 else soft
    # 3. Blur: sigma = blur / 2, so the ramp spans about ``blur`` px each side of the edge.
    if blur > 0:
        grown = cv2.GaussianBlur(grown, (0, 0), sigmaX=blur / 2.0, borderType=cv2.BORDER_REPLICATE)
    return np.clip(np.maximum(grown, soft), 0.0, 1.0).astype(np.float32)


def composite_alpha(mask: np.ndarray, feather: int) -> np.ndarray:
    """float32 (H, W) in [0, 1]: the alpha to blend the generated pixels with.

    Ramps from the selection's edge up to 1 over ``feather + 1`` px *inside* the selection
    (smoothstep of the distance to the nearest unselected pixel; the image border does not
    count as an edge), times the selection value. So alpha is exactly 0 where mask == 0 and
    intermediate where the selection itself is soft.
    """
    # 1. Check inputs.
    check_mask("mask", mask, allow_float=True)
    feather = _check_px("inpaint.feather", feather)
    soft = mask_to_float(mask)
    if feather == 0:
        return soft.astype(np.float32)
    # 2. Distance (px) from every selected pixel to the nearest unselected one.
    support = (soft > 0).astype(np.uint8)
    if support.all():
        return soft.astype(np.float32)
    distance = cv2.distanceTransform(support, cv2.DIST_L2, 5)
    # 3. Smoothstep ramp inside the selection, times the selection's own softness.
    t = np.clip(distance / float(feather + 1), 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    alpha = ramp * soft
    alpha[support == 0] = 0.0
    return alpha.astype(np.float32)
