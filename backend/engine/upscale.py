"""``mode: "upscale"``: scale the region by any factor 1..4, optionally refine it in tiles.

1. The image (alpha prefilled underneath transparent pixels for the refine) goes through the
   chosen super-resolution model, then Lanczos to exactly round(w*f) x round(h*f); without a
   model, Lanczos alone. Alpha is scaled with the picture, never dropped.
2. ``refine``: tiled img2img at the checkpoint's native tile size (tiled_refine.py) with the
   prompt, LoRAs, controls (cropped per tile) and, when one is installed, the ``tile``
   ControlNet. With a mask (factor 1: refine in place) only the selection's box is refined and
   the result's alpha is the selection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from backend.engine.compositing import prefill, resize_rgb
from backend.engine.errors import InvalidRequest
from backend.engine.geometry import selection_bounds
from backend.engine.tiled_refine import plan_tiles, refine_tiled
from backend.engine.tiles import Tile
from backend.engine.types import ControlInput, GenerationRequest, Inventory, Layer, ResultMetadata
from backend.engine.upscalers import find_upscaler, scale_image

MAX_OUTPUT_SIDE = 16384
MAX_OUTPUT_PIXELS = 8192 * 8192
REFINE_MARGIN = 32  # px of context around a selection refined in place
TILE_CONTROL_STRENGTH = 0.5
MIN_AUTO_TILE = 512  # px: an automatic tile is never smaller (tiny models are 64 px native)


def output_size(width: int, height: int, factor: float) -> tuple[int, int]:
    return max(1, round(width * factor)), max(1, round(height * factor))


def refine_box(request: GenerationRequest) -> tuple[int, int, int, int]:
    """(x, y, w, h) refined at output size: all of it, or the selection's box + margin."""
    width, height = output_size(request.width, request.height, request.upscale.factor)
    if request.mask is None:
        return 0, 0, width, height
    bounds = selection_bounds(request.mask)
    if bounds is None:
        return 0, 0, width, height
    x0, y0 = max(0, bounds.x - REFINE_MARGIN), max(0, bounds.y - REFINE_MARGIN)
    x1 = min(width, bounds.x + bounds.width + REFINE_MARGIN)
    y1 = min(height, bounds.y + bounds.height + REFINE_MARGIN)
    return x0, y0, x1 - x0, y1 - y0


def native_side(request: GenerationRequest, loaded: Any | None) -> int:
    """The tile side: a style's preferred resolution, else the loaded model's native size."""
    if request.resolution:
        return int(request.resolution)
    return int(loaded.native_resolution) if loaded is not None else 512


def tile_side(request: GenerationRequest, native: int) -> int:
    """The refine tile: ``upscale.tile_size``, else the native size but at least 512 px
    (a 64 px native tile would mean thousands of tiles on a big region)."""
    return request.upscale.tile_size or max(MIN_AUTO_TILE, native)


def planned_steps(request: GenerationRequest, native: int) -> int:
    """Every step the job reports: tiles x steps per item when refining, else 1 per item."""
    if not request.upscale.refine:
        return request.batch
    _, _, width, height = refine_box(request)
    tile = tile_side(request, native)
    grid = plan_tiles(width, height, tile, request.upscale.tile_overlap)
    return len(grid.tiles) * request.steps * request.batch


def check_upscale(request: GenerationRequest, inventory: Inventory) -> None:
    """What the protocol's ranges cannot say: the output size, the mask's factor, the model."""
    settings = request.upscale
    factor = settings.factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise InvalidRequest("upscale.factor", factor, "expected a number 1..4")
    if not 1.0 <= float(factor) <= 4.0:
        raise InvalidRequest("upscale.factor", factor, "expected 1..4")
    if request.mask is not None and float(factor) != 1.0:
        raise InvalidRequest(
            "upscale.factor",
            factor,
            "refine in place (with a selection) keeps the size: use factor 1, or upscale "
            "without a selection",
        )
    if request.mask is not None and not settings.refine:
        raise InvalidRequest("mask", "given", "a selection is used only with refine: true")
    width, height = output_size(request.width, request.height, float(factor))
    if max(width, height) > MAX_OUTPUT_SIDE or width * height > MAX_OUTPUT_PIXELS:
        raise InvalidRequest(
            "upscale.factor",
            factor,
            f"the result would be {width}x{height}, over the limit of {MAX_OUTPUT_PIXELS} "
            "pixels: use a smaller factor or region",
        )
    if settings.model is not None:
        find_upscaler(inventory.upscalers, settings.model)
    if not settings.refine and (request.controls or request.loras):
        field = "controls" if request.controls else "loras"
        raise InvalidRequest(field, "given", "used only by the refine pass: set refine: true")


def scaled_image(
    request: GenerationRequest, model: Any | None, seed: int, check: Callable[[], None]
) -> np.ndarray:
    """The region at output size, RGBA; colours under transparent pixels prefilled when
    refining (the refine pass must not invent from garbage)."""
    assert request.image is not None
    width, height = output_size(request.width, request.height, request.upscale.factor)
    source = request.image
    if request.upscale.refine:
        filled = prefill(source, request.inpaint.fill, seed=seed)
        source = np.concatenate([filled[..., :3], source[..., 3:4]], axis=2)
    return scale_image(source, width, height, model, check)


def tile_control(inventory: Inventory, family: str, request: GenerationRequest) -> bool:
    """Whether the refine pass adds the ``tile`` ControlNet (installed, none asked for)."""
    if any(control.type == "tile" for control in request.controls):
        return False
    return any(net.family == family and net.type == "tile" for net in inventory.controlnets)


def run_upscale(
    engine: Any,
    request: GenerationRequest,
    loaded: Any | None,
    task: Any | None,
    report: Callable[[int, int, np.ndarray | None], None],
    check: Callable[[], None],
) -> list[tuple[np.ndarray, int]]:
    """(RGBA layer, seed) per item. ``task``: the job's DenoiseTask template (refine only)."""
    model = None
    if request.upscale.model is not None:
        entry = find_upscaler(engine.inventory().upscalers, request.upscale.model)
        model = engine.upscaler_cache().get(entry)
    seeds = [request.seed + index for index in range(request.batch)]
    total = planned_steps(request, native_side(request, loaded))
    results = []
    for index, seed in enumerate(seeds):
        check()
        image = scaled_image(request, model, seed, check)
        if request.upscale.refine:
            assert task is not None and loaded is not None
            image = _refine(engine, request, loaded, task, image, index, seed, report, total)
        else:
            report(index + 1, total, None)
        if request.mask is not None:
            image = np.concatenate([image[..., :3], request.mask[..., None]], axis=2)
        results.append((image, seed))
    return results


def _refine(
    engine: Any,
    request: GenerationRequest,
    loaded: Any,
    task: Any,
    image: np.ndarray,
    index: int,
    seed: int,
    report: Callable[[int, int, np.ndarray | None], None],
    total: int,
) -> np.ndarray:
    x, y, width, height = refine_box(request)
    tile = tile_side(request, native_side(request, loaded))
    grid = plan_tiles(width, height, tile, request.upscale.tile_overlap)
    region = np.ascontiguousarray(image[y : y + height, x : x + width, :3])
    factor = request.upscale.factor
    extra: list[ControlInput] = []
    if tile_control(engine.inventory(), loaded.family, request):
        assert request.image is not None
        extra.append(
            ControlInput("tile", request.image, None, TILE_CONTROL_STRENGTH, 0.0, 1.0, False)
        )
    controlled = dataclasses.replace(request, controls=[*request.controls, *extra])

    def make_task(part: Tile, crop: np.ndarray, noise: Any) -> Any:
        def fit(source: np.ndarray) -> np.ndarray:
            return crop_scaled(source, part, x, y, factor, (x + width, y + height))

        controls = engine._controls(controlled, loaded.family, fit) if controlled.controls else []
        item = [task.item_embeds[index]] if getattr(task, "item_embeds", None) else []
        return dataclasses.replace(
            task,
            kind="img2img",
            width=part.width,
            height=part.height,
            seeds=[seed],
            image=crop,
            item_images=[],
            mask=None,
            controls=controls,
            noise=noise,
            strength=request.strength,
            **({"item_embeds": item} if item else {}),
        )

    done_before = index * len(grid.tiles) * request.steps
    refined = refine_tiled(
        region, grid, seed, make_task, engine._denoise, request.steps, report, done_before, total
    )
    image[y : y + height, x : x + width, :3] = refined  # ours (scaled_image): no copy
    return image


def crop_scaled(
    source: np.ndarray,
    tile: Tile,
    x: int,
    y: int,
    factor: float,
    limit: tuple[int, int] | None = None,
) -> np.ndarray:
    """The part of a request-sized image (a control) under ``tile`` of the output picture
    (tile coordinates relative to the refined box at (x, y)): cropped, scaled, and past
    ``limit`` (the refined box's right/bottom edge; default the scaled picture's) edge-padded
    exactly like the picture's own padding (tiles.pad_to_multiple)."""
    height, width = source.shape[:2]
    right_edge, bottom_edge = limit or (round(width * factor), round(height * factor))
    inner_w = max(1, min(tile.width, right_edge - (x + tile.x)))
    inner_h = max(1, min(tile.height, bottom_edge - (y + tile.y)))
    left = min(width - 1, int((x + tile.x) / factor))
    top = min(height - 1, int((y + tile.y) / factor))
    right = min(width, max(left + 1, round((x + tile.x + inner_w) / factor)))
    bottom = min(height, max(top + 1, round((y + tile.y + inner_h) / factor)))
    crop = resize_rgb(np.ascontiguousarray(source[top:bottom, left:right, :3]), inner_w, inner_h)
    pads = ((0, tile.height - inner_h), (0, tile.width - inner_w), (0, 0))
    return np.pad(crop, pads, mode="edge") if pads[0][1] or pads[1][1] else crop


def upscale_layers(
    engine: Any,
    request: GenerationRequest,
    loaded: Any | None,
    task: Any | None,
    on_step: Callable[[int, int, Any], None],
    prompts: Any = None,
) -> list[Layer]:
    """The upscale job's layers (x=y=0, output size). ``loaded``/``task``: only to refine;
    ``on_step(step, total, preview)`` reports progress and raises Cancelled when asked."""
    total = planned_steps(request, native_side(request, loaded))
    done = [0]

    def report(step: int, steps: int, preview: np.ndarray | None) -> None:
        done[0] = max(done[0], step)
        on_step(step, steps, preview)

    def check() -> None:
        on_step(done[0], total, None)

    layers = []
    for image, seed in run_upscale(engine, request, loaded, task, report, check):
        if loaded is not None:
            metadata = engine._metadata(request, loaded, seed, request.strength, prompts)
        else:
            metadata = plain_metadata(request, seed)
        layers.append(Layer(image, 0, 0, seed, metadata))
    return layers


def plain_metadata(request: GenerationRequest, seed: int) -> ResultMetadata:
    """What made a resampled (not refined) layer: the upscaler, no checkpoint."""
    return ResultMetadata(
        prompt="",
        negative_prompt="",
        seed=seed,
        model=request.upscale.model or "lanczos",
        sampler="",
        steps=0,
        cfg_scale=0.0,
        strength=0.0,
        mode="upscale",
        width=request.width,
        height=request.height,
    )
