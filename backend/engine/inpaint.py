"""Inpaint and outpaint around one denoise: what to crop, at which size, and how the result
becomes a layer that is transparent wherever the artist did not select.

1. crop the region to the selection's bounds plus context (``geometry.context_box``);
2. fill transparent pixels (outpaint, or holes) so the model sees plausible colour;
3. resize the crop and its grown, blurred denoise mask to the model's native size;
4. (the engine denoises);
5. resize back, match colours to the untouched surroundings, apply the feathered
   composite alpha (0 outside the selection, soft where the selection is soft) and trim the
   layer to the selection's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.engine.compositing import (
    color_match,
    crop_mask,
    crop_rgba,
    make_layer,
    prefill,
    resize_mask,
    resize_rgb,
)
from backend.engine.errors import InvalidRequest
from backend.engine.geometry import Box, context_box, native_size, selection_bounds
from backend.engine.masks import clean_selection, composite_alpha, denoise_mask, mask_params
from backend.engine.types import GenerationRequest


@dataclass
class InpaintPlan:
    """The crop of one inpaint: boxes in region pixels, arrays at crop or native size."""

    bounds: Box  # the selection's bounds in the region
    box: Box  # bounds + context, clipped to the region: what is cropped and denoised
    native_width: int
    native_height: int
    original: np.ndarray  # (box.h, box.w, 4) the crop as sent (alpha = known pixels)
    filled: np.ndarray  # (box.h, box.w, 3) RGB with transparent pixels prefilled
    denoise: np.ndarray  # (box.h, box.w) float32 0..1: grown + blurred selection
    alpha: np.ndarray  # (box.h, box.w) float32 0..1: the feathered composite alpha
    native_image: np.ndarray  # (native_h, native_w, 3) uint8: what the model starts from
    native_mask: np.ndarray  # (native_h, native_w) float32 0..1: the denoise mask


def plan_inpaint(request: GenerationRequest, native: int, multiple: int = 8) -> InpaintPlan:
    """Steps 1-3 for ``request`` (mode inpaint or outpaint, checked by the engine)."""
    # 1. The selection and the box around it.
    if request.image is None:
        raise InvalidRequest("image", None, f"{request.mode} needs the region's pixels")
    if request.mask is None:
        raise InvalidRequest("mask", None, f"{request.mode} needs a selection mask")
    mask = clean_selection(request.mask)  # below the noise level = unselected (masks.py)
    bounds = selection_bounds(mask)
    if bounds is None:
        raise InvalidRequest("mask", "empty", f"{request.mode} needs a non-empty selection")
    settings = request.inpaint
    box = context_box(bounds, request.width, request.height, settings.context)
    # 2. Crops, the two masks and the prefilled RGB.
    original = crop_rgba(request.image, box)
    selection = crop_mask(mask, box)
    grow, blur, feather = mask_params(bounds, settings.grow, settings.blur, settings.feather)
    denoise = denoise_mask(selection, grow, blur)
    alpha = composite_alpha(selection, feather)
    filled = prefill(original, settings.fill, seed=request.seed)
    # 3. Native size.
    native_w, native_h = native_size(box.width, box.height, native, multiple)
    return InpaintPlan(
        bounds=bounds,
        box=box,
        native_width=native_w,
        native_height=native_h,
        original=original,
        filled=filled,
        denoise=denoise,
        alpha=alpha,
        native_image=resize_rgb(filled, native_w, native_h),
        native_mask=np.clip(resize_mask(denoise, native_w, native_h), 0.0, 1.0),
    )


def item_sources(plan: InpaintPlan, fill: str, seeds: list[int]) -> list[np.ndarray]:
    """The native-size source of each seed: the fill noise under transparent pixels is seeded
    per item, so item i starts from exactly what a single run with ``seeds[i]`` starts from
    (``seeds[0]`` is ``plan.native_image``)."""
    if bool((plan.original[..., 3] == 255).all()):
        return [plan.native_image] * len(seeds)  # nothing to fill: one source for all
    sources = [plan.native_image]
    for seed in seeds[1:]:
        filled = prefill(plan.original, fill, seed=seed)
        sources.append(resize_rgb(filled, plan.native_width, plan.native_height))
    return sources


def finish_inpaint(
    plan: InpaintPlan, generated: np.ndarray, match_colors: bool = True
) -> tuple[np.ndarray, int, int]:
    """Step 5: a (h, w, 3) uint8 native-size result -> (layer RGBA, x, y) in the region."""
    expected = (plan.native_height, plan.native_width, 3)
    if generated.shape != expected or generated.dtype != np.uint8:
        raise InvalidRequest(
            "generated", (generated.shape, str(generated.dtype)), f"expected {expected} uint8"
        )
    # 1. Back to the crop's size.
    rgb = resize_rgb(generated, plan.box.width, plan.box.height)
    # 2. Colours measured on the known pixels outside the repainted band.
    if match_colors:
        rgb = color_match(rgb, plan.original, plan.denoise)
    # 3. Transparent outside the selection, trimmed to the selection's bounds.
    layer = make_layer(rgb, plan.alpha)
    left, top = plan.bounds.x - plan.box.x, plan.bounds.y - plan.box.y
    trimmed = layer[top : top + plan.bounds.height, left : left + plan.bounds.width].copy()
    return trimmed, plan.bounds.x, plan.bounds.y


def crop_like_plan(plan: InpaintPlan, image: np.ndarray) -> np.ndarray:
    """A region-sized RGB(A) image (a control map) cropped and resized exactly as the
    inpaint image: (native_h, native_w, 3) uint8."""
    rgba = image if image.shape[2] == 4 else _opaque(image)
    crop = crop_rgba(rgba, plan.box)
    return resize_rgb(np.ascontiguousarray(crop[..., :3]), plan.native_width, plan.native_height)


def _opaque(rgb: np.ndarray) -> np.ndarray:
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2)
