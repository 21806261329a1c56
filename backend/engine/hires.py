"""High-resolution generation: regions much larger than the model's native size.

Without it, a 4096 px txt2img is a 512 px picture stretched eightfold and a 2500 px inpaint
comes back as a bilinear stretch. With it (automatic above ``HIRES_RATIO`` x native per side,
on unless the server setting or the job's ``hires: false`` turns it off):

1. the first pass denoises at native size, as before (composition);
2. the result is brought to the full size through the upscale path: the best installed
   super-resolution model, else Lanczos (upscalers.py);
3. a tiled refine pass (tiled_refine.py) at the family's ``hires_strength`` adds the detail,
   tile by tile at native size, with the same prompt, seed, LoRAs and controls (cropped per
   tile), running ``round(steps x strength)`` steps per tile.

For inpaint/outpaint the "region" is the selection's box with context; the refined box is
then composited exactly like a normal inpaint result (colour match, feathered selection).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from backend.engine import families
from backend.engine.compositing import color_match, make_layer, resize_rgb
from backend.engine.geometry import context_box, selection_bounds
from backend.engine.masks import clean_selection
from backend.engine.tiled_refine import plan_tiles, refine_tiled
from backend.engine.tiles import Tile
from backend.engine.types import GenerationRequest, UpscalerEntry
from backend.engine.upscale import crop_scaled
from backend.engine.upscalers import scale_image

HIRES_RATIO = 1.5  # per side: hires when the box has more than (1.5 x native)^2 pixels
MODES = ("txt2img", "img2img", "inpaint", "outpaint")


def wanted(
    request: GenerationRequest, width: int, height: int, native: int, setting: bool, model: str
) -> bool:
    """Whether a box of ``width`` x ``height`` gets the two-pass treatment. The tiny built-in
    test models (64 px native) never switch it on by themselves: only ``hires: true`` does."""
    if request.mode not in MODES:
        return False
    automatic = setting and families.tiny_family(model) is None
    enabled = automatic if request.hires is None else bool(request.hires)
    return enabled and width * height > (HIRES_RATIO * native) ** 2


def box_size(request: GenerationRequest) -> tuple[int, int]:
    """The size the first pass stands for: the region, or the inpaint box (selection+context)."""
    if request.mode in ("inpaint", "outpaint") and request.mask is not None:
        bounds = selection_bounds(clean_selection(request.mask))
        if bounds is not None:
            box = context_box(bounds, request.width, request.height, request.inpaint.context)
            return box.width, box.height
    return request.width, request.height


def refine_steps(request: GenerationRequest, family: str) -> int:
    strength = families.get(family).hires_strength
    return max(1, round(request.steps * strength))


def planned_steps(
    request: GenerationRequest, native: int, family: str, setting: bool, model: str
) -> int:
    """Every step a txt2img/img2img/inpaint job reports, the refine tiles included."""
    first = request.steps * request.batch
    width, height = box_size(request)
    if not wanted(request, width, height, native, setting, model):
        return first
    tiles = len(plan_tiles(width, height, native).tiles)
    return first + tiles * refine_steps(request, family) * request.batch


def best_upscaler(upscalers: list[UpscalerEntry]) -> UpscalerEntry | None:
    """The installed model to enlarge with: usable, the largest scale, then by name."""
    usable = [entry for entry in upscalers if entry.problem is None and entry.scale > 1]
    return min(usable, key=lambda e: (-e.scale, e.name)) if usable else None


@dataclasses.dataclass
class HiresPass:
    """One job's second pass; ``first_pass`` wraps the first pass's progress."""

    engine: Any
    request: GenerationRequest
    loaded: Any
    width: int  # the full size the first pass stands for
    height: int
    on_step: Callable[[int, int, Any], None]
    total: int

    def first_pass(self) -> Callable[[int, int, Any], None]:
        def on_step(step: int, _total: int, latents: Any) -> None:
            self.on_step(step, self.total, latents)

        return on_step

    def full_size(
        self, task: Any, image: np.ndarray, index: int, x: int = 0, y: int = 0
    ) -> np.ndarray:
        """(native_h, native_w, 3) first-pass result -> (height, width, 3) refined.
        ``x``/``y``: where the box lies in the request's region (controls are cropped there)."""
        request, loaded = self.request, self.loaded
        entry = best_upscaler(self.engine.inventory().upscalers)
        model = self.engine.upscaler_cache().get(entry) if entry is not None else None
        alpha = np.full((*image.shape[:2], 1), 255, np.uint8)
        rgba = np.concatenate([image[..., :3], alpha], axis=2)
        full = scale_image(rgba, self.width, self.height, model)[..., :3]
        native = request.resolution or loaded.native_resolution
        grid = plan_tiles(self.width, self.height, native)
        steps = refine_steps(request, loaded.family)
        strength = families.get(loaded.family).hires_strength
        seed = request.seed + index

        def make_task(tile: Tile, crop: np.ndarray, noise: Any) -> Any:
            def fit(source: np.ndarray) -> np.ndarray:
                return crop_scaled(source, tile, x, y, 1.0, (x + self.width, y + self.height))

            controls = (
                self.engine._controls(request, loaded.family, fit) if request.controls else []
            )
            item = [task.item_embeds[index]] if getattr(task, "item_embeds", None) else []
            return dataclasses.replace(
                task,
                kind="img2img",
                width=tile.width,
                height=tile.height,
                seeds=[seed],
                image=crop,
                item_images=[],
                mask=None,
                controls=controls,
                noise=noise,
                strength=strength,
                steps=steps,
                **({"item_embeds": item} if item else {}),
            )

        def report(step: int, total: int, preview: Any) -> None:
            self.on_step(step, total, preview)

        done = request.steps * request.batch + index * len(grid.tiles) * steps
        return refine_tiled(
            full, grid, seed, make_task, self.engine._denoise, steps, report, done, self.total
        )


def plan_hires(
    engine: Any,
    request: GenerationRequest,
    loaded: Any,
    on_step: Callable[[int, int, Any], None],
    setting: bool,
) -> HiresPass | None:
    """The job's second pass, or None when the box is not much larger than native."""
    native = request.resolution or loaded.native_resolution
    width, height = box_size(request)
    if not wanted(request, width, height, native, setting, loaded.name):
        return None
    total = planned_steps(request, native, loaded.family, setting, loaded.name)
    return HiresPass(engine, request, loaded, width, height, on_step, total)


def finish_inpaint_full(
    plan: Any, rgb: np.ndarray, match_colors: bool
) -> tuple[np.ndarray, int, int]:
    """``inpaint.finish_inpaint`` for a result already at the box's full size (no stretch)."""
    if rgb.shape[:2] != (plan.box.height, plan.box.width):
        rgb = resize_rgb(rgb, plan.box.width, plan.box.height)
    if match_colors:
        rgb = color_match(rgb, plan.original, plan.denoise)
    layer = make_layer(rgb, plan.alpha)
    left, top = plan.bounds.x - plan.box.x, plan.bounds.y - plan.box.y
    trimmed = layer[top : top + plan.bounds.height, left : left + plan.bounds.width].copy()
    return trimmed, plan.bounds.x, plan.bounds.y
