"""``mode: "edit"``: change the region by an instruction, with reference images (docs/engine.md).

The geometry is inpaint's (inpaint.py), the model call the family's (``Family.edit``):

1. with a selection: the selection's bounds plus context, cropped and resized to the
   family's size (``plan_inpaint``); without one: the whole region at that size;
2. reference images: the job's ``reference`` controls without a model, in order, as RGB
   (transparent pixels over white), each at its own size (the family resizes them);
3. ``EditSpec.run(pipe, EditCall)``: one RGB picture per seed;
4. with a selection: back to the crop's size, colour-matched to the untouched pixels, alpha
   = the feathered selection, trimmed to the selection's bounds and placed there
   (``finish_inpaint``); without one: an opaque layer covering the region at (0, 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.engine import families
from backend.engine.compositing import prefill, resize_rgb
from backend.engine.errors import InvalidRequest
from backend.engine.geometry import native_size
from backend.engine.inpaint import finish_inpaint, plan_inpaint
from backend.engine.prompt_syntax import plan_for
from backend.engine.types import ControlInput, EditCall, GenerationRequest, Layer


def is_edit_reference(control: Any) -> bool:
    """A reference image for an edit: a ``reference`` control that names no IP-Adapter."""
    return getattr(control, "type", None) == "reference" and getattr(control, "model", 0) is None


def reference_rgb(control: ControlInput) -> np.ndarray:
    """A reference control's pixels as (h, w, 3) uint8 RGB, transparent pixels over white."""
    image = control.image
    if image.shape[2] == 3:
        return np.ascontiguousarray(image)
    alpha = image[..., 3:4].astype(np.float32) / 255.0
    rgb = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)


@dataclass
class StepCounter:
    """Turns a family's per-call ``on_step(step, total, latents)`` into the job's progress:
    every reported step counts once, over ``planned`` steps in all (more if the family
    reports more). Latents become a preview only when they have the family's latent
    channels as (B, C, h, w); anything else (packed transformer latents, None) shows none."""

    on_step: Callable[[int, int, Any], None]
    planned: int
    channels: int
    done: int = 0

    def __call__(self, step: int, total: int, latents: Any = None) -> None:
        self.done += 1
        shape = getattr(latents, "shape", ())
        preview = latents if len(shape) == 4 and shape[1] == self.channels else None
        self.on_step(self.done, max(self.planned, self.done), preview)


def checked_output(picture: object, width: int, height: int, what: str) -> np.ndarray:
    """A family's RGB output as (height, width, 3) uint8 (resized when it differs)."""
    if not isinstance(picture, np.ndarray) or picture.ndim != 3 or picture.dtype != np.uint8:
        raise InvalidRequest(what, getattr(picture, "shape", picture), "expected uint8 RGB")
    rgb = np.ascontiguousarray(picture[..., :3])
    if rgb.shape[:2] != (height, width):
        rgb = resize_rgb(rgb, width, height)
    return rgb


def run_edit(
    engine: Any, request: GenerationRequest, loaded: Any, on_step: Callable[[int, int, Any], None]
) -> list[Layer]:
    """Steps 1-4 for ``request`` (mode "edit", checked at submit: edit_checks.py) on the
    loaded checkpoint; one layer per seed ``request.seed + i``."""
    family = families.get(loaded.family)
    spec = family.edit
    if spec is None:
        raise InvalidRequest("model", loaded.name, f"{family.label} models cannot edit")
    assert request.image is not None  # checked at submit
    native = request.resolution or loaded.native_resolution
    seeds = [request.seed + index for index in range(request.batch)]
    references = [reference_rgb(c) for c in request.controls if is_edit_reference(c)]
    prompts = plan_for(request, engine._lora_names())
    counter = StepCounter(on_step, request.steps * len(seeds), family.preview.channels)
    # 1. The crop at the family's size.
    plan = None
    if request.mask is not None:
        plan = plan_inpaint(request, native, family.size_multiple)
        width, height = plan.native_width, plan.native_height
        image, mask = plan.native_image, plan.native_mask.astype(np.float32)
    else:
        width, height = native_size(request.width, request.height, native, family.size_multiple)
        filled = prefill(request.image, request.inpaint.fill, seed=request.seed)
        image, mask = resize_rgb(filled, width, height), None
    # 2-3. One call for all seeds, or one per seed when wildcards made the prompts differ.
    groups = (
        [list(range(len(seeds)))] if prompts.same_for_all() else [[i] for i in range(len(seeds))]
    )
    pictures: list[np.ndarray] = [np.empty(0, np.uint8)] * len(seeds)
    for items in groups:
        call = EditCall(
            prompt=prompts.prompts[items[0]],
            negative_prompt=prompts.negatives[items[0]],
            image=image,
            references=references,
            mask=mask,
            width=width,
            height=height,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            guidance=family.defaults.guidance,
            seeds=[seeds[i] for i in items],
            strength=request.strength,
            on_step=counter,
        )
        outputs = spec.run(loaded.pipe, call)
        if len(outputs) != len(items):
            raise InvalidRequest("seeds", len(items), f"the model returned {len(outputs)} images")
        for i, picture in zip(items, outputs, strict=True):
            pictures[i] = checked_output(picture, width, height, "edit result")
    # 4. Layers placed like inpaint results (or covering the region).
    placed = []
    for picture in pictures:
        if plan is not None:
            placed.append(finish_inpaint(plan, picture, request.inpaint.color_match))
        else:
            rgb = resize_rgb(picture, request.width, request.height)
            alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
            placed.append((np.concatenate([rgb, alpha], axis=2), 0, 0))
    return [
        Layer(
            pixels, x, y, seed, engine._metadata(request, loaded, seed, request.strength, prompts)
        )
        for (pixels, x, y), seed in zip(placed, seeds, strict=True)
    ]
