"""Apply a style to a job or live frame: what the request sets explicitly wins, else the style's
value, else the default (docs/protocol.md, "Styles").

"Explicitly" means present in the request's JSON (pydantic's ``model_fields_set``), even at the
default value. The prompt is the style's template with ``{prompt}`` replaced by the request's
text (a template without ``{prompt}`` gets the text appended after ", "); the negative prompt
likewise. LoRAs are the style's plus the request's (the request's weight wins on a duplicate
name). The checkpoint is the request's ``model`` if set, else the first installed of the style's
checkpoints. A live frame takes ``live_sampler``/``live_steps`` instead of sampler/steps and
leaves CFG to the few-step preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from backend.engine.types import GenerationRequest, Inventory
from backend.protocol import MAX_LORAS, JobParams, LiveParams, LoraParams, Style
from backend.styles import StyleError, StyleNotFound, StyleStore

PLACEHOLDER = "{prompt}"
#: settings a style fills for a job (same names on Style and JobParams)
JOB_SETTINGS = ("sampler", "steps", "cfg_scale", "clip_skip", "vae")
#: settings a style fills for a live frame: (LiveParams field, Style field)
LIVE_SETTINGS = (("sampler", "live_sampler"), ("steps", "live_steps"), ("clip_skip", "clip_skip"))

P = TypeVar("P", JobParams, LiveParams)


class UnknownStyle(StyleError):
    """The request names a style that does not exist or cannot be used (422 on ``style``)."""

    status = 422
    code = "invalid_style"


@dataclass
class StyleOutcome:
    """What the style decided beyond the request's own fields (for the engine and metadata)."""

    style: str | None = None
    prediction: str | None = None  # scheduler prediction type override
    resolution: int | None = None  # preferred native side, px
    from_style: list[str] = field(default_factory=list)  # the fields the style decided


def apply_template(template: str, text: str) -> str:
    """``template`` with ``{prompt}`` replaced by ``text`` (appended after ", " if absent)."""
    if PLACEHOLDER in template:
        joined = template.replace(PLACEHOLDER, text)
    else:
        joined = ", ".join(part for part in (template.strip(), text.strip()) if part)
    return joined.strip().strip(",").strip()


def merge_loras(style: list[LoraParams], request: list[LoraParams]) -> list[LoraParams]:
    """The style's LoRAs, then the request's; a name in both keeps the request's weight."""
    names = {lora.name for lora in request}
    return [lora for lora in style if lora.name not in names] + list(request)


def pick_checkpoint(style: Style, inventory: Inventory) -> str | None:
    """The first of the style's checkpoints that is installed (None: the style names none)."""
    if not style.checkpoints:
        return None
    installed = {entry.name for entry in inventory.checkpoints}
    for name in style.checkpoints:
        if name in installed:
            return name
    raise UnknownStyle(
        f"style={style.name!r}: none of its checkpoints is installed "
        f"({', '.join(style.checkpoints)}); install one of them or pick a model",
        "style",
    )


def _explicit(params: BaseModel, name: str, live: bool) -> bool:
    """Set in the request's JSON; a live frame's null sampler/steps mean "the preset"."""
    if live and name in ("sampler", "steps"):
        return getattr(params, name) is not None
    return name in params.model_fields_set


def resolve(
    params: P, store: StyleStore, inventory: Inventory, *, live: bool = False
) -> tuple[P, StyleOutcome]:
    """``params`` with the style's values filled in, and what else the style decided."""
    if params.style is None:
        return params, StyleOutcome()
    try:
        style = store.get(params.style, inventory, field="style")
    except StyleNotFound as exc:
        raise UnknownStyle(exc.message, "style") from exc
    except StyleError as exc:
        raise UnknownStyle(exc.message, "style") from exc
    update: dict[str, Any] = {}
    decided: list[str] = []
    # 1. The checkpoint: the request's, else the style's first installed one.
    if params.model is None:
        model = pick_checkpoint(style, inventory)
        if model is not None:
            update["model"] = model
            decided.append("model")
    # 2. Prompts and LoRAs always combine.
    update["prompt"] = apply_template(style.prompt, params.prompt)
    update["negative_prompt"] = apply_template(style.negative_prompt, params.negative_prompt)
    loras = merge_loras(style.loras, params.loras)
    if len(loras) > MAX_LORAS:
        raise UnknownStyle(
            f"style={style.name!r}: with its {len(style.loras)} LoRAs the job would have "
            f"{len(loras)}; at most {MAX_LORAS}: remove some from the request",
            "style",
        )
    update["loras"] = loras
    decided += [name for name in ("prompt", "negative_prompt") if getattr(style, name)]
    decided += ["loras"] if style.loras else []
    # 3. Settings: explicit request fields win, then the style's (live: its live settings).
    pairs = LIVE_SETTINGS if live else tuple((name, name) for name in JOB_SETTINGS)
    for target, source in (*pairs, ("vae", "vae")) if live else pairs:
        value = getattr(style, source)
        if value is not None and not _explicit(params, target, live):
            update[target] = value
            decided.append(target)
    resolved = params.model_copy(update=update)
    outcome = StyleOutcome(
        style=style.name,
        prediction=style.prediction,
        resolution=style.resolution,
        from_style=decided
        + [name for name in ("prediction", "resolution") if getattr(style, name) is not None],
    )
    return resolved, outcome


def attach(
    request: GenerationRequest, original: JobParams | LiveParams, outcome: StyleOutcome
) -> None:
    """Put the style's outcome on the engine request: the prediction and resolution it runs
    with, the metadata record, and which field each LoRA's errors name (a style's LoRA:
    ``style``; the request's own: its place in the request's list)."""
    request.style = outcome.style
    request.prediction = outcome.prediction
    request.resolution = outcome.resolution
    if outcome.style is None:
        return
    own = {lora.name: index for index, lora in enumerate(original.loras)}
    for lora in request.loras:
        index = own.get(lora.name)
        lora.field = "style" if index is None else f"loras[{index}].name"
    request.resolved = {
        "model": request.model,
        "sampler": request.sampler,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "clip_skip": request.clip_skip,
        "vae": request.vae,
        "prediction": outcome.prediction,
        "resolution": outcome.resolution,
        "from_style": list(outcome.from_style),
    }
