"""Colour matching: undo the colour drift a model adds to the area it repaints.

Inpainting models (and the VAE round trip) often shift the colours of the whole crop a
little: a warmer cast, lifted blacks. Next to untouched pixels that shift shows as a seam.
The generated crop also contains the model's version of pixels *outside* the area it
repainted, so comparing the two there measures the drift exactly: we match the per-channel
mean and standard deviation (in sRGB by default, optionally CIE L*a*b*; see SPACES) of the
generated pixels to the original ones in a ring just outside the repainted band around the
selection, and apply the same correction to the whole crop.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from backend.engine.errors import InvalidRequest
from backend.engine.geometry import selection_bounds
from backend.engine.image_checks import check_image, check_mask
from backend.engine.masks import mask_params

#: Fewest known ring pixels for trustworthy statistics; fewer falls back to all the context.
MIN_PIXELS = 16
#: The ring around the selection: this fraction of sqrt(selection area), within these px.
RING_FACTOR, RING_RANGE = 0.25, (8, 64)
#: Contrast is matched only within these ratios (guards against flat reference areas and
#: new content far from the ring's colours being stretched), on images blurred this much.
STD_RATIO_RANGE = (0.75, 1.33)
CONTRAST_SIGMA = 2.0
KNOWN_ALPHA = 250
#: "rgb" (default): per-channel sRGB. Exact for plain per-channel casts, and the offset
#: stays a small offset on new content of any colour. "lab": CIE L*a*b*; perceptually
#: independent channels, but an a*/b* offset measured on the ring's colours can move very
#: different new content (e.g. a teal object in a warm scene) by tens of levels.
SPACES = ("rgb", "lab")


def _to_space(rgb: np.ndarray, space: str) -> np.ndarray:
    if space == "lab":
        return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return rgb.astype(np.float32)


def _smooth(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), CONTRAST_SIGMA, borderType=cv2.BORDER_REPLICATE)


def _within(area: np.ndarray, px: float) -> np.ndarray:
    """Boolean: pixels at most ``px`` away from ``area`` (``area`` included)."""
    if not area.any():
        return area.copy()
    distance = cv2.distanceTransform((~area).astype(np.uint8), cv2.DIST_L2, 3)
    return distance <= px


def _repainted_band(selected: np.ndarray) -> np.ndarray:
    """Where the model repaints when the caller did not say: the selection grown by the
    automatic grow + blur of ``mask_params``."""
    bounds = selection_bounds(selected.astype(np.uint8))
    if bounds is None:
        return selected
    grow, blur, _ = mask_params(bounds, None, None, None)
    return _within(selected, grow + blur)


def reference_pixels(
    mask: np.ndarray,
    known: np.ndarray,
    ring: int | None = None,
    denoise: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean (H, W): the pixels whose colours the generated crop must match.

    1. Known pixels in a ring ``ring`` px wide just outside the repainted area (where
       ``denoise`` > 0.02, or the selection grown by the automatic grow + blur).
    2. Too few (< MIN_PIXELS)? All known pixels outside the repainted area.
    3. Still too few? All known unselected pixels (the edge of the selection).
    """
    selected = mask > 0
    if denoise is None:
        repainted = _repainted_band(selected)
    else:
        repainted = selected | (denoise > (0.02 if denoise.dtype != np.uint8 else 5))
    untouched = ~repainted & known
    if ring is None:
        size = math.sqrt(float(selected.sum()))
        ring = int(min(RING_RANGE[1], max(RING_RANGE[0], round(size * RING_FACTOR))))
    in_ring = _within(repainted, ring) & untouched
    if in_ring.sum() >= MIN_PIXELS:
        return in_ring
    if untouched.sum() >= MIN_PIXELS:
        return untouched
    return ~selected & known


def color_match(
    generated: np.ndarray,
    original: np.ndarray,
    mask: np.ndarray,
    strength: float = 1.0,
    ring: int | None = None,
    denoise: np.ndarray | None = None,
    space: str = "rgb",
) -> np.ndarray:
    """``generated`` (RGB or RGBA uint8) with its colours matched to ``original`` (same size,
    RGB or RGBA; pixels with alpha < 250 are unknown) around ``mask`` (the selection).
    Pass ``denoise`` (the denoise mask at the crop's size) so the reference ring starts
    exactly where the model stopped repainting; without it the band is estimated from the
    selection size. See ``reference_pixels``. ``space`` picks where the statistics are
    matched (see ``SPACES``).

    ``strength`` 0..1 blends between no correction and the full one. Returns the same shape
    as ``generated`` (its alpha, if any, is kept); unchanged when no known pixel is outside
    the mask.
    """
    # 1. Check inputs.
    check_image("generated", generated)
    check_image("original", original)
    if original.shape[:2] != generated.shape[:2]:
        raise InvalidRequest(
            "original", original.shape, f"size must match generated {generated.shape[:2]}"
        )
    check_mask("mask", mask, shape=generated.shape[:2], allow_float=True)
    if denoise is not None:
        check_mask("denoise", denoise, shape=generated.shape[:2], allow_float=True)
    if space not in SPACES:
        raise InvalidRequest("space", space, f"expected one of {list(SPACES)}")
    if not (0.0 <= strength <= 1.0):
        raise InvalidRequest("strength", strength, "expected 0..1")
    # 2. Reference pixels: known, unselected, near the selection.
    known = (
        original[..., 3] >= KNOWN_ALPHA
        if original.shape[2] == 4
        else np.ones(original.shape[:2], bool)
    )
    where = reference_pixels(mask, known, ring, denoise)
    if strength == 0.0 or not where.any():
        return generated.copy()
    # 3. Statistics over the same pixels of both images.
    #    Contrast (std) is compared on both images blurred alike, so fine texture the model
    #    or the resize softened is not mistaken for a loss of contrast.
    gen = _to_space(generated[..., :3], space)
    ref_all = _to_space(original[..., :3], space)
    gen_mean, ref_mean = gen[where].mean(axis=0), ref_all[where].mean(axis=0)
    gen_std = _smooth(gen)[where].std(axis=0)
    ref_std = _smooth(ref_all)[where].std(axis=0)
    ratio = np.where(gen_std > 1e-3, ref_std / np.maximum(gen_std, 1e-3), 1.0)
    ratio = np.clip(ratio, *STD_RATIO_RANGE)
    # 4. Apply the affine correction to the whole crop, blended by strength.
    matched = (gen - gen_mean) * ratio + ref_mean
    work = gen + (matched - gen) * float(strength)
    if space == "lab":
        work = cv2.cvtColor(work.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0
    out = generated.copy()
    out[..., :3] = np.round(np.clip(work, 0.0, 255.0)).astype(np.uint8)
    return out
