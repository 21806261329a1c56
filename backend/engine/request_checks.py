"""Cheap checks of a ``GenerationRequest`` before it is queued: no GPU, no model loading.

Each failure raises ``InvalidRequest(field, value, reason)`` (or ``ModelNotFound``) naming the
parameter the way the HTTP contract spells it ("steps", "mask", "controls[0].type",
"loras[1].name"), so the plugin can point the artist at the right widget.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from backend.engine.errors import InvalidRequest, ModelNotFound
from backend.engine.fill import FILL_METHODS
from backend.engine.masks import NOISE_LEVEL, has_selection
from backend.engine.schedulers import check_steps
from backend.engine.types import CheckpointEntry, GenerationRequest, Inventory
from backend.engine.used_inputs import check_used_inputs

MODES = ("txt2img", "img2img", "inpaint", "outpaint")
MIN_SIDE, MAX_SIDE = 8, 8192
DEFAULT_MAX_PIXELS = 4096 * 4096
MAX_STEPS, MAX_CFG, MAX_BATCH, MAX_CLIP_SKIP = 150, 30.0, 8, 4


def _number(field: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidRequest(field, value, "expected a number")
    if not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise InvalidRequest(field, value, f"expected {low:g}..{high:g}")
    return float(value)


def _integer(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidRequest(field, value, "expected an integer")
    if not low <= int(value) <= high:
        raise InvalidRequest(field, value, f"expected {low}..{high}")
    return int(value)


def _describe(array: object) -> object:
    if isinstance(array, np.ndarray):
        return f"array shape={tuple(array.shape)} dtype={array.dtype}"
    return type(array).__name__


def _check_pixels(field: str, array: object, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidRequest(field, _describe(array), "expected a numpy array")
    if array.dtype != np.uint8:
        raise InvalidRequest(field, _describe(array), "expected dtype uint8")
    if tuple(array.shape) != shape:
        raise InvalidRequest(
            field, _describe(array), f"expected shape {shape} (the request's height, width)"
        )
    return array


def find_checkpoint(inventory: Inventory, name: str | None) -> CheckpointEntry:
    if name is None:
        raise ModelNotFound("No model is selected and no default model is set.", field="model")
    for entry in inventory.checkpoints:
        if entry.name == name:
            return entry
    raise ModelNotFound(f"Model {name!r} is not installed.", field="model")


def check_request(
    request: GenerationRequest,
    inventory: Inventory,
    default_model: str | None,
    samplers: Collection[str],
    control_types: Collection[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> CheckpointEntry:
    """Raise on the first bad parameter; returns the checkpoint the request will use."""
    # 1. Mode and size.
    if request.mode not in MODES:
        raise InvalidRequest("mode", request.mode, f"expected one of {list(MODES)}")
    width = _integer("width", request.width, MIN_SIDE, MAX_SIDE)
    height = _integer("height", request.height, MIN_SIDE, MAX_SIDE)
    if width * height > max_pixels:
        raise InvalidRequest(
            "width", f"{width}x{height}", f"the region is larger than {max_pixels} pixels"
        )
    # 2. Pixels: the image for every mode but txt2img, a non-empty mask for (out)painting,
    #    and nothing the mode would ignore (used_inputs.py).
    check_used_inputs(request.mode, request.image is not None, request.mask is not None)
    if request.image is not None or request.mode != "txt2img":
        if request.image is None:
            raise InvalidRequest("image", None, f"{request.mode} needs the region's pixels")
        _check_pixels("image", request.image, (height, width, 4))
    if request.mask is not None or request.mode in ("inpaint", "outpaint"):
        if request.mask is None:
            raise InvalidRequest("mask", None, f"{request.mode} needs a selection mask")
        mask = _check_pixels("mask", request.mask, (height, width))
        if request.mode in ("inpaint", "outpaint") and not has_selection(mask):
            raise InvalidRequest(
                "mask",
                f"max {int(mask.max())}",
                f"nothing is selected: {request.mode} needs a selection, and mask values up to "
                f"{NOISE_LEVEL} (of 255) count as unselected noise",
            )
    # 3. Sampling parameters.
    strength = _number("strength", request.strength, 0.0, 1.0)
    if strength == 0.0 and request.mode in ("img2img", "inpaint"):
        raise InvalidRequest("strength", strength, "0 would return the image unchanged")
    steps = _integer("steps", request.steps, 1, MAX_STEPS)
    if request.mode in ("img2img", "inpaint"):
        check_steps(steps, strength)  # the artist's steps must fit in the strength's window
    _number("cfg_scale", request.cfg_scale, 0.0, MAX_CFG)
    _integer("batch", request.batch, 1, MAX_BATCH)
    _integer("clip_skip", request.clip_skip, 1, MAX_CLIP_SKIP)
    _integer("seed", request.seed, 0, 2**63 - 1)
    if request.sampler not in samplers:
        raise InvalidRequest("sampler", request.sampler, f"expected one of {sorted(samplers)}")
    if request.inpaint.fill not in FILL_METHODS:
        raise InvalidRequest("inpaint.fill", request.inpaint.fill, f"expected {FILL_METHODS}")
    check_used_inputs(request.mode, False, False, request.inpaint)
    # 4. Names against the inventory.
    checkpoint = find_checkpoint(inventory, request.model or default_model)
    for index, control in enumerate(request.controls):
        _check_control(index, control, checkpoint.family, inventory, control_types, height, width)
    for index, lora in enumerate(request.loras):
        field = f"loras[{index}]"
        _number(f"{field}.weight", lora.weight, -4.0, 4.0)
        entry = next((item for item in inventory.loras if item.name == lora.name), None)
        if entry is None:
            raise ModelNotFound(f"LoRA {lora.name!r} is not installed.", field=f"{field}.name")
        if entry.family is not None and entry.family != checkpoint.family:
            raise InvalidRequest(
                f"{field}.name",
                lora.name,
                f"is a {entry.family} LoRA; the model is {checkpoint.family}",
            )
    return checkpoint


def _check_control(
    index: int,
    control: object,
    family: str,
    inventory: Inventory,
    control_types: Collection[str],
    height: int,
    width: int,
) -> None:
    field = f"controls[{index}]"
    kind = getattr(control, "type", None)
    if kind not in control_types:
        raise InvalidRequest(f"{field}.type", kind, f"expected one of {sorted(control_types)}")
    image = getattr(control, "image", None)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidRequest(f"{field}.image", _describe(image), "expected (H, W, 4) uint8")
    _check_pixels(f"{field}.image", image, (height, width, image.shape[2]))
    _number(f"{field}.strength", getattr(control, "strength", None), 0.0, 2.0)
    start = _number(f"{field}.start", getattr(control, "start", None), 0.0, 1.0)
    end = _number(f"{field}.end", getattr(control, "end", None), 0.0, 1.0)
    if start > end:
        raise InvalidRequest(f"{field}.start", start, f"must not be after end={end:g}")
    name = getattr(control, "model", None)
    nets = [net for net in inventory.controlnets if net.family == family]
    if name is not None:
        if not any(net.name == name for net in inventory.controlnets):
            raise ModelNotFound(f"ControlNet {name!r} is not installed.", field=f"{field}.model")
        if not any(net.name == name for net in nets):
            raise InvalidRequest(f"{field}.model", name, f"is not a ControlNet for {family}")
    elif not any(net.type in (kind, "any") for net in nets):
        raise ModelNotFound(
            f"No {kind} ControlNet for {family} models is installed.", field=f"{field}.type"
        )
