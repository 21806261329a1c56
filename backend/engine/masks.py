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

**What counts as selected** (``clean_selection``, applied to every mask before anything else):
a mask value *is* the selection's strength (128 stays 128, so a soft selection's value is its
alpha), except for *noise*: values up to ``NOISE_LEVEL`` = 8 (of 255, about 3 %) that are not
the faint tail of a soft edge. A canvas export dithers flat black to 1-3 and a JPEG round trip
leaves 1-5 levels around a white shape: taken as a selection, such noise made the layer cover
the whole region and shifted every pixel outside the selection by a few levels. A feathered
selection, though, fades out through 8 ... 1, and those faint levels are part of the artist's
feather. The rule: a value of 1-8 is kept only within ``TAIL`` (1/2) of the width of the soft
band next to it, that is where its distance to the nearest value above 8 is at most half the
distance from there on to the selection's core (values within 8 of the mask's maximum);
everything else at or below 8 becomes 0. A hard edge has no soft band, so a white square on
1-3 noise is exactly the square; a Gaussian feather keeps every level of its tail (its 1-8 tail
is about a quarter of its band). For comparison, diffusers binarizes inpaint masks at 50 % and
GIMP/Krita count any non-zero pixel in a selection's bounds. A mask with nothing above 8 is
refused at submit ("nothing is selected").

**The feather never swallows a small selection**: the ramp of ``composite_alpha`` is capped by
how thick the selection is around each pixel (the deepest pixel within ``feather + 1`` px), so
the innermost pixels of every piece reach full alpha: a 2x2 or a 1 px line is fully opaque
where it is fully selected. Grow and blur are not capped: they only widen what the model
repaints (the layer stays transparent outside the selection) and a tiny selection needs that
room to be repainted at all at the latent's 8 px resolution.
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
#: Mask values up to this are noise unless they are the tail of a soft edge (clean_selection).
NOISE_LEVEL = 8
#: A faint tail reaches at most this fraction of the soft band's width past the band.
TAIL = 0.5


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


def clean_selection(mask: np.ndarray) -> np.ndarray:
    """The selection an artist means, uint8 (H, W): values above NOISE_LEVEL as they are;
    values 1..NOISE_LEVEL only as the tail of a soft edge (within TAIL x the soft band's width
    of it), else 0. See the module doc."""
    check_mask("mask", mask)
    selected = mask > NOISE_LEVEL
    faint = (mask > 0) & ~selected
    if not faint.any() or not selected.any():
        return np.where(selected, mask, 0).astype(np.uint8)
    # Distances (px) from every pixel to the nearest selected pixel and to the core.
    core = mask >= max(NOISE_LEVEL + 1, int(mask.max()) - NOISE_LEVEL)
    to_selected = cv2.distanceTransform((~selected).astype(np.uint8), cv2.DIST_L2, 3)
    to_core = cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, 3)
    # The soft band between here and the core is (to_core - to_selected) px wide.
    tail = faint & (to_selected <= TAIL * (to_core - to_selected))
    return np.where(selected | tail, mask, 0).astype(np.uint8)


def has_selection(mask: np.ndarray) -> bool:
    """True when some mask value is above the noise level."""
    return bool(mask.max() > NOISE_LEVEL)


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
    count as an edge), capped by the selection value: ``min(ramp, v / 255)``. So alpha is
    exactly 0 where mask == 0, and a soft selection's value *is* its alpha (its softness is
    applied once, not squared by a second fade). Where the selection is thinner than the
    ramp, the ramp is shortened to its depth (the deepest pixel within ``feather + 1`` px), so
    every piece of the selection reaches full alpha at its innermost pixels.
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
    # 3. The ramp's length: feather + 1 px, or the local depth where the selection is thinner.
    reach = float(feather + 1)
    depth = cv2.dilate(distance, _disk(feather + 1))
    length = np.clip(depth, 1.0, reach)
    # 4. Smoothstep ramp inside the selection, capped by the selection's own softness: a soft
    #    (feathered) edge already fades, and ramp x softness would apply it twice (a pixel
    #    selected at v would get less than v); a hard edge (v = 255) gets the ramp.
    t = np.clip(distance / length, 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    alpha = np.minimum(ramp, soft)
    alpha[support == 0] = 0.0
    return alpha.astype(np.float32)
