"""``mode: "layers"``: split the region (or the selection) into N RGBA layers
(docs/engine.md "Layers"), through the family's ``Family.decompose``.

1. the box: the selection's bounds (no context), else the whole region; its pixels with
   transparent ones prefilled, resized to the family's size;
2. ``DecomposeSpec.run(pipe, DecomposeCall)``: N (h, w, 4) layers, bottom first, and the
   pipeline's own (h, w, 3) composite;
3. ``composite_error``: the mean absolute difference (0..255, over RGB) at the family's size
   between the N layers composited "over" each other onto black and that composite;
4. each layer resized back to the box (premultiplied), its alpha multiplied by the
   selection and by the source's own alpha, placed at the box's offset.

Results: N layers, index 0 = the bottom one, all with the job's seed; each one's metadata
carries ``layer_index``, ``layers`` and ``composite_error``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from backend.engine import families
from backend.engine.compositing import crop_mask, crop_rgba, prefill, resize_rgb, resize_rgba
from backend.engine.edit import StepCounter, checked_output
from backend.engine.errors import InvalidRequest
from backend.engine.geometry import Box, native_size, selection_bounds
from backend.engine.masks import clean_selection
from backend.engine.prompt_syntax import plan_for
from backend.engine.types import DecomposeCall, Decomposition, GenerationRequest, Layer


def layer_count(request: GenerationRequest, family: families.Family) -> int:
    """How many layers the job makes: the request's, else the family's default."""
    spec = family.decompose
    if spec is None:
        raise InvalidRequest("model", request.model, f"{family.label} models cannot decompose")
    return spec.default_layers if request.layers is None else int(request.layers)


def stack(layers: list[np.ndarray]) -> np.ndarray:
    """(h, w, 3) float32 0..255: straight-alpha RGBA layers, bottom first, composited "over"
    each other onto black."""
    out = np.zeros((*layers[0].shape[:2], 3), np.float32)
    for layer in layers:
        alpha = layer[..., 3:4].astype(np.float32) / 255.0
        out = layer[..., :3].astype(np.float32) * alpha + out * (1.0 - alpha)
    return out


def composite_error(layers: list[np.ndarray], composite: np.ndarray) -> float:
    """Mean absolute difference (0..255) between ``stack(layers)`` and ``composite``."""
    return float(np.abs(stack(layers) - composite[..., :3].astype(np.float32)).mean())


def checked_decomposition(found: object, count: int, width: int, height: int) -> Decomposition:
    """The family's answer: ``count`` (height, width, 4) uint8 layers and an RGB composite."""
    if not isinstance(found, Decomposition) or len(found.layers) != count:
        got = len(found.layers) if isinstance(found, Decomposition) else type(found).__name__
        raise InvalidRequest("layers", got, f"the model was asked for {count} layers")
    layers = []
    for index, layer in enumerate(found.layers):
        shape = getattr(layer, "shape", None)
        if not isinstance(layer, np.ndarray) or layer.dtype != np.uint8 or shape is None:
            raise InvalidRequest(f"layers[{index}]", shape, "expected (h, w, 4) uint8 RGBA")
        if layer.shape != (height, width, 4):
            if layer.ndim != 3 or layer.shape[2] != 4:
                raise InvalidRequest(f"layers[{index}]", shape, "expected (h, w, 4) uint8 RGBA")
            layer = resize_rgba(layer, width, height)
        layers.append(layer)
    composite = checked_output(found.composite, width, height, "composite")
    return Decomposition(layers=layers, composite=composite)


def run_decompose(
    engine: Any, request: GenerationRequest, loaded: Any, on_step: Callable[[int, int, Any], None]
) -> list[Layer]:
    """Steps 1-4 for ``request`` (mode "layers", checked at submit) on the loaded checkpoint."""
    family = families.get(loaded.family)
    spec = family.decompose
    count = layer_count(request, family)
    assert spec is not None and request.image is not None  # checked at submit
    # 1. The box and its pixels at the family's size.
    selection = None if request.mask is None else clean_selection(request.mask)
    box = Box(0, 0, request.width, request.height)
    if selection is not None:
        box = selection_bounds(selection) or box
    source = crop_rgba(request.image, box)
    native = request.resolution or loaded.native_resolution
    width, height = native_size(box.width, box.height, native, family.size_multiple)
    filled = prefill(source, request.inpaint.fill, seed=request.seed)
    prompts = plan_for(request, engine._lora_names())
    call = DecomposeCall(
        prompt=prompts.prompts[0],
        negative_prompt=prompts.negatives[0],
        image=resize_rgb(filled, width, height),
        layers=count,
        width=width,
        height=height,
        steps=request.steps,
        cfg_scale=request.cfg_scale,
        seed=request.seed,
        on_step=StepCounter(on_step, request.steps, family.preview.channels),
    )
    # 2-3. The model, and how well its layers add up to its own composite.
    found = checked_decomposition(spec.run(loaded.pipe, call), count, width, height)
    error = round(composite_error(found.layers, found.composite), 3)
    # 4. Back to the box, cut by the selection and the source's alpha.
    keep = source[..., 3].astype(np.float32) / 255.0
    if selection is not None:
        keep *= crop_mask(selection, box).astype(np.float32) / 255.0
    metadata = engine._metadata(request, loaded, request.seed, request.strength, prompts)
    results = []
    for index, layer in enumerate(found.layers):
        pixels = resize_rgba(layer, box.width, box.height)
        alpha = np.round(pixels[..., 3].astype(np.float32) * keep).astype(np.uint8)
        pixels[..., 3] = alpha
        pixels[alpha == 0, :3] = 0
        info = replace(metadata, layer_index=index, layers=count, composite_error=error)
        results.append(Layer(pixels, box.x, box.y, request.seed, info))
    return results
