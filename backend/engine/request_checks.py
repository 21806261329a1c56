"""Cheap checks of a ``GenerationRequest`` before it is queued: no GPU, no model loading.

Each failure raises ``InvalidRequest(field, value, reason)`` (or ``ModelNotFound``) naming the
parameter the way the HTTP contract spells it ("steps", "mask", "controls[0].type",
"loras[1].name"), so the plugin can point the artist at the right widget.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from backend.engine import families
from backend.engine.architecture import describe_widths
from backend.engine.edit_checks import FAMILY_RUN_MODES, check_family_run, check_layers_field
from backend.engine.errors import InvalidRequest, ModelNotFound
from backend.engine.fill import FILL_METHODS
from backend.engine.masks import NOISE_LEVEL, has_selection
from backend.engine.reference import check_reference, is_reference
from backend.engine.schedulers import check_steps
from backend.engine.types import CheckpointEntry, GenerationRequest, Inventory
from backend.engine.used_inputs import check_used_inputs
from backend.engine.vae import choose_vae, missing_vae_sentence

MODES = ("txt2img", "img2img", "inpaint", "outpaint", "upscale", *FAMILY_RUN_MODES)
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
    _refuse_skipped(inventory, "checkpoints", name, "model")
    raise ModelNotFound(f"Model {name!r} is not installed.", field="model")


def _refuse_skipped(inventory: Inventory, kind: str, name: object, field: str) -> None:
    """A file of that name was found but cannot be used: say why, not "not installed"."""
    reason = inventory.skipped_reason(kind, name)
    if reason is not None:
        raise InvalidRequest(field, name, reason)


def check_request(
    request: GenerationRequest,
    inventory: Inventory,
    default_model: str | None,
    samplers: Collection[str],
    control_types: Collection[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model_vaes: dict[str, str] | None = None,
) -> CheckpointEntry:
    """Raise on the first bad parameter; returns the checkpoint the request will use.

    Everything the model files' headers tell is checked here, before queueing: ControlNet and
    LoRA families and widths against the checkpoint's, LoRA formats we cannot load, the VAE's
    family, and whether a checkpoint without a VAE has one to run with (``model_vaes``: the
    per-model default VAEs)."""
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
    # 3. Sampling parameters (upscale: what upscale.py checks; without refine, no model).
    refine = request.mode == "upscale" and request.upscale.refine
    if request.mode == "upscale":
        from backend.engine.upscale import check_upscale

        check_upscale(request, inventory)
    strength = _number("strength", request.strength, 0.0, 1.0)
    if strength == 0.0 and (request.mode in ("img2img", "inpaint") or refine):
        raise InvalidRequest("strength", strength, "0 would return the image unchanged")
    steps = _integer("steps", request.steps, 1, MAX_STEPS)
    if request.mode in ("img2img", "inpaint") or refine:
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
    # 4. Names against the inventory (edit, layers: the family runs them, edit_checks.py).
    check_layers_field(request)
    checkpoint = find_checkpoint(inventory, request.model or default_model)
    if request.mode in FAMILY_RUN_MODES:
        check_family_run(request, checkpoint, inventory)
    else:
        _check_family_supports(request, checkpoint, refine)
    for index, control in enumerate(
        request.controls if request.mode not in FAMILY_RUN_MODES else ()
    ):
        if is_reference(control):  # IP-Adapter reference images (reference.py)
            check_reference(index, control, checkpoint, inventory)
            continue
        _check_control(index, control, checkpoint, inventory, control_types, height, width)
    for index, lora in enumerate(request.loras):
        _check_lora(index, lora, checkpoint, inventory)
    _check_vae(request.vae, checkpoint, inventory, model_vaes or {})
    return checkpoint


def _check_family_supports(
    request: GenerationRequest, checkpoint: CheckpointEntry, refine: bool
) -> None:
    """The mode and ControlNet controls against what the checkpoint's family offers
    (its ``Family.pipelines``; what /v1/models ``capabilities`` tells the plugin)."""
    if checkpoint.family not in families.ids():
        return
    family = families.get(checkpoint.family)
    modes = family.modes()
    if (request.mode != "upscale" or refine) and request.mode not in modes:
        raise InvalidRequest(
            "mode",
            request.mode,
            f"the model {checkpoint.name!r} ({family.label}) cannot run {request.mode}; "
            f"it runs {', '.join(modes)}",
        )
    if family.controlnet:
        _check_control_tasks(request, checkpoint, family)
        return
    for index, control in enumerate(request.controls):
        if not is_reference(control):
            raise InvalidRequest(
                f"controls[{index}].type",
                getattr(control, "type", None),
                f"{family.label} models have no ControlNet: the model {checkpoint.name!r} "
                "cannot use control layers (remove them, or pick another model)",
            )


#: the diffusers task each request mode runs as
MODE_TASKS = {"txt2img": "txt2img", "img2img": "img2img", "upscale": "img2img"}


def _check_control_tasks(
    request: GenerationRequest, checkpoint: CheckpointEntry, family: families.Family
) -> None:
    """ControlNet controls need the family's ControlNet pipeline for the mode (Z-Image has no
    img2img one), and one control at a time where it cannot run several."""
    nets = [i for i, control in enumerate(request.controls) if not is_reference(control)]
    if not nets:
        return
    task = MODE_TASKS.get(request.mode, "inpaint")
    if (task, True) not in family.pipelines:
        raise InvalidRequest(
            f"controls[{nets[0]}].type",
            getattr(request.controls[nets[0]], "type", None),
            f"{family.label} models cannot use a ControlNet in {request.mode} (the model "
            f"{checkpoint.name!r}): remove the control layer or use another mode",
        )
    if len(nets) > 1 and family.multi_controlnet_class is None:
        raise InvalidRequest(
            f"controls[{nets[1]}].type",
            getattr(request.controls[nets[1]], "type", None),
            f"{family.label} models take one ControlNet control at a time: hide the others",
        )


def _check_lora(
    index: int, lora: object, checkpoint: CheckpointEntry, inventory: Inventory
) -> None:
    # The field errors name: its place in the request's list, or where it came from
    # ("prompt" for a <lora:...> tag, "style" for a style's LoRA).
    field = getattr(lora, "field", None) or f"loras[{index}].name"
    weight_field = field[: -len(".name")] + ".weight" if field.endswith(".name") else field
    name = getattr(lora, "name", None)
    _number(weight_field, getattr(lora, "weight", None), -4.0, 4.0)
    entry = next((item for item in inventory.loras if item.name == name), None)
    if entry is None:
        _refuse_skipped(inventory, "lora", name, field)
        raise ModelNotFound(f"LoRA {name!r} is not installed.", field=field)
    if entry.problem is not None:
        raise InvalidRequest(field, name, entry.problem)
    if entry.family is not None and not families.fits(entry.family, checkpoint.family):
        raise InvalidRequest(
            field,
            name,
            f"is a LoRA for {families.label(entry.family)}; the model {checkpoint.name!r} is "
            f"{families.label(checkpoint.family)}: pick a LoRA made for "
            f"{families.label(checkpoint.family)}",
        )
    text = checkpoint.widths[1] if checkpoint.widths else None
    if entry.text_width is not None and text is not None and entry.text_width != text:
        raise InvalidRequest(
            field,
            name,
            f"was made for a model with text width {entry.text_width}; the model "
            f"{checkpoint.name!r} has {text}",
        )


def _check_vae(
    requested: str | None,
    checkpoint: CheckpointEntry,
    inventory: Inventory,
    model_vaes: dict[str, str],
) -> None:
    name = choose_vae(inventory, checkpoint, requested, model_vaes)
    if name is None:
        if not checkpoint.has_vae:
            raise InvalidRequest(
                "vae", requested, missing_vae_sentence(checkpoint.name, checkpoint.family)
            )
        return
    entry = next((item for item in inventory.vaes if item.name == name), None)
    if entry is None:
        _refuse_skipped(inventory, "vae", name, "vae")
        raise ModelNotFound(f"VAE {name!r} is not installed.", field="vae")
    if entry.problem is not None:
        raise InvalidRequest("vae", name, entry.problem)
    if entry.family is not None and not families.fits(entry.family, checkpoint.family):
        label = families.label(entry.family)
        raise InvalidRequest(
            "vae",
            name,
            f"is an {label} VAE; the model {checkpoint.name!r} is "
            f"{families.label(checkpoint.family)}",
        )


def _check_control(
    index: int,
    control: object,
    checkpoint: CheckpointEntry,
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
    family, wanted = checkpoint.family, checkpoint.widths
    nets = [net for net in inventory.controlnets if families.fits(net.family, family)]
    if name is not None:
        entry = next((net for net in inventory.controlnets if net.name == name), None)
        if entry is None:
            _refuse_skipped(inventory, "controlnet", name, f"{field}.model")
            raise ModelNotFound(f"ControlNet {name!r} is not installed.", field=f"{field}.model")
        if not families.fits(entry.family, family):
            raise InvalidRequest(
                f"{field}.model",
                name,
                f"is a ControlNet for {families.label(entry.family)}; the model "
                f"{checkpoint.name!r} is {families.label(family)}: pick a "
                f"{families.label(family)} ControlNet, or leave the model empty to pick one",
            )
        if entry.type not in ("any", kind):
            raise InvalidRequest(
                f"{field}.model",
                name,
                f"is a {entry.type} ControlNet (by its file name); this control is {kind}: "
                f"pick a {kind} ControlNet, or leave the model empty to pick one",
            )
        if wanted is not None and entry.widths is not None and entry.widths != wanted:
            raise InvalidRequest(
                f"{field}.model",
                name,
                f"does not fit the model {checkpoint.name!r}: the ControlNet has "
                f"{describe_widths(entry.widths)}, the model {describe_widths(wanted)}",
            )
        return
    fitting = [net for net in nets if wanted is None or net.widths is None or net.widths == wanted]
    if not any(net.type in (kind, "any") for net in fitting):
        raise ModelNotFound(
            f"No {kind} ControlNet that fits the model {checkpoint.name!r} "
            f"({families.label(family)}) is "
            "installed: put one in the models/controlnet/ folder.",
            field=f"{field}.type",
        )
