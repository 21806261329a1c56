"""Submit-time checks of modes "edit" and "layers" (called by request_checks.py): the
checkpoint can do it, the references fit its limit, the layer count its range.

Errors name the field as the HTTP contract spells it: ``model`` (``mode`` when the request
names no model and the default one cannot), ``controls``/``controls[i].type``, ``layers``,
``batch``, ``mask``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.engine import families
from backend.engine.edit import is_edit_reference
from backend.engine.errors import InvalidRequest
from backend.engine.masks import NOISE_LEVEL, has_selection
from backend.engine.types import CheckpointEntry, GenerationRequest, Inventory

#: the modes checked here (the rest: request_checks.py)
FAMILY_RUN_MODES = ("edit", "layers")
_WHAT = {"edit": "edit by instruction", "layers": "decompose a picture into layers"}


def _family(entry: CheckpointEntry) -> families.Family | None:
    return families.get(entry.family) if entry.family in families.ids() else None


def _able(entry: CheckpointEntry, mode: str) -> bool:
    family = _family(entry)
    return family is not None and mode in family.modes()


def check_layers_field(request: GenerationRequest) -> None:
    """``layers`` belongs to mode "layers" only."""
    if request.layers is not None and request.mode != "layers":
        raise InvalidRequest(
            "layers",
            request.layers,
            f"is the layer count of mode layers; mode {request.mode} would ignore it "
            "(leave it out)",
        )


def check_live_edit(
    request: GenerationRequest, inventory: Inventory, default_model: str | None
) -> None:
    """A live frame with ``edit: true``: the checkpoint edits and is fast enough for live
    painting (``EditSpec.live``); else 422 on ``edit`` naming the installed ones that are."""
    name = request.model or default_model
    entry = next((c for c in inventory.checkpoints if c.name == name), None)
    family = None if entry is None else _family(entry)
    if family is not None and family.edit is not None and family.edit.live:
        return
    able = [
        c.name
        for c in inventory.checkpoints
        if (f := _family(c)) is not None and f.edit is not None and f.edit.live
    ]
    hint = f"pick one that can: {', '.join(able)}" if able else "no installed model can"
    raise InvalidRequest(
        "edit",
        True,
        f"the model {name!r} cannot edit by instruction fast enough for live painting: {hint} "
        "(or turn Edit off for live painting)",
    )


def check_family_run(
    request: GenerationRequest, checkpoint: CheckpointEntry, inventory: Inventory
) -> None:
    """Everything mode "edit"/"layers" needs of the request and its checkpoint."""
    mode = request.mode
    # 1. The checkpoint can do it; else name the installed ones that can.
    family = _family(checkpoint)
    if family is None or mode not in family.modes():
        able = [entry.name for entry in inventory.checkpoints if _able(entry, mode)]
        kinds = sorted({f.label for f in families.FAMILIES if mode in f.modes()})
        label = families.label(checkpoint.family)
        if able:
            hint = f"pick one that can: {', '.join(able)}"
        else:
            hint = "no installed model can; install one of " + (", ".join(kinds) or "none")
        raise InvalidRequest(
            "model" if request.model else "mode",
            request.model or mode,
            f"the model {checkpoint.name!r} ({label}) cannot {_WHAT[mode]}: {hint}",
        )
    # 2. A selection, when sent, selects something.
    if request.mask is not None and not has_selection(request.mask):
        raise InvalidRequest(
            "mask",
            f"max {int(request.mask.max())}",
            f"nothing is selected: send no mask to {mode} the whole region (mask values up "
            f"to {NOISE_LEVEL} of 255 count as unselected noise)",
        )
    if mode == "edit":
        _check_references(request, checkpoint, family)
    else:
        _check_layers(request, checkpoint, family)


def _check_references(
    request: GenerationRequest, checkpoint: CheckpointEntry, family: families.Family
) -> None:
    assert family.edit is not None
    count = 0
    for index, control in enumerate(request.controls):
        if not is_edit_reference(control):
            kind = getattr(control, "type", None)
            field = "model" if kind == "reference" else "type"
            raise InvalidRequest(
                f"controls[{index}].{field}",
                getattr(control, field, None),
                "edit takes reference images only (controls of type reference with no model); "
                f"a {kind} control {'with a model ' if field == 'model' else ''}is not used by "
                "edit: remove it, or use another mode",
            )
        image = getattr(control, "image", None)
        if not _rgb_like(image):
            raise InvalidRequest(
                f"controls[{index}].image",
                getattr(image, "shape", None),
                "expected (h, w, 4) uint8",
            )
        count += 1
    limit = family.edit.max_references
    if count > limit:
        raise InvalidRequest(
            "controls",
            count,
            f"the model {checkpoint.name!r} ({family.label}) takes at most {limit} reference "
            f"image{'s' if limit != 1 else ''} in edit mode; {count} were sent: remove "
            f"{count - limit}",
        )


def _check_layers(
    request: GenerationRequest, checkpoint: CheckpointEntry, family: families.Family
) -> None:
    spec = family.decompose
    assert spec is not None
    if request.controls:
        raise InvalidRequest(
            "controls[0].type",
            getattr(request.controls[0], "type", None),
            "decomposing into layers uses no control layers: remove them",
        )
    if request.batch != 1:
        raise InvalidRequest(
            "batch", request.batch, "decomposing makes one set of layers per job: send batch 1"
        )
    count = spec.default_layers if request.layers is None else request.layers
    if (
        isinstance(count, bool)
        or not isinstance(count, (int, np.integer))
        or not spec.min_layers <= count <= spec.max_layers
    ):
        raise InvalidRequest(
            "layers",
            count,
            f"the model {checkpoint.name!r} ({family.label}) splits into "
            f"{spec.min_layers}..{spec.max_layers} layers",
        )


def _rgb_like(image: Any) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] in (3, 4)
        and image.shape[0] > 0
        and image.shape[1] > 0
    )
