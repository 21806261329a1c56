"""What the chosen checkpoint supports (``capabilities`` in GET /v1/models, docs/protocol.md).

The docker hides the negative prompt and CFG when the model's family has none (distilled
models), greys out what the model cannot do (modes, live, control layers, LoRAs) with a
tooltip naming why, and the request builder refuses a mode the model lacks before anything is
sent. A checkpoint without ``capabilities`` (an older server) supports everything, as before.
No Qt, no Krita.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .errors import InvalidSetting
from .protocol import CLASSIC_MODES, MAX_LAYERS, MIN_LAYERS, ModelsInfo

#: how the docker and the refusals name each mode
MODE_WORDS = {
    "txt2img": "generate a new image",
    "img2img": "refine an image",
    "inpaint": "inpaint a selection",
    "outpaint": "outpaint into transparent pixels",
    "upscale": "upscale or refine detail",
    "edit": "edit by instruction",
    "layers": "decompose into layers",
}


@dataclass(frozen=True)
class EditAbility:
    """``capabilities.edit``: reference images it takes besides the input, fast enough for live."""

    max_references: int = 0
    live: bool = False


@dataclass(frozen=True)
class LayerRange:
    """``capabilities.layers``: how many layers a decomposition may have (``default`` first)."""

    min: int = MIN_LAYERS
    max: int = MAX_LAYERS
    default: int = 4


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Capabilities:
    model: str = ""  # the checkpoint's name ("" when unknown)
    family: str = ""
    modes: Tuple[str, ...] = CLASSIC_MODES  # edit/layers only where the server says so
    negative_prompt: bool = True
    cfg: bool = True
    controlnet: bool = True
    loras: bool = True
    live: bool = True
    native_size: Optional[int] = None
    size_multiple: int = 8
    default_cfg_scale: Optional[float] = None
    default_steps: Optional[int] = None
    edit: Optional[EditAbility] = None  # None: cannot edit by instruction
    layers: Optional[LayerRange] = None  # None: cannot decompose into layers

    @classmethod
    def parse(cls, data: Any, model: str = "", family: str = "") -> "Capabilities":
        """From the server's dict; absent or malformed values keep the permissive default."""
        if not isinstance(data, dict):
            return cls(model=model, family=family)
        base = cls(model=model, family=family)
        values: Dict[str, Any] = {}
        modes = data.get("modes")
        if isinstance(modes, list) and all(isinstance(m, str) for m in modes):
            values["modes"] = tuple(modes)
        for key in ("negative_prompt", "cfg", "controlnet", "loras", "live"):
            if isinstance(data.get(key), bool):
                values[key] = data[key]
        for key in ("native_size", "size_multiple"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                values[key] = value
        defaults = data.get("defaults")
        if isinstance(defaults, dict):
            cfg = defaults.get("cfg_scale")
            if isinstance(cfg, (int, float)) and not isinstance(cfg, bool):
                values["default_cfg_scale"] = float(cfg)
            steps = defaults.get("steps")
            if isinstance(steps, int) and not isinstance(steps, bool):
                values["default_steps"] = steps
        edit = data.get("edit")
        if isinstance(edit, dict):
            refs = _int(edit.get("max_references"))
            values["edit"] = EditAbility(max(0, refs or 0), edit.get("live") is True)
        layers = data.get("layers")
        if isinstance(layers, dict):
            low = max(MIN_LAYERS, _int(layers.get("min")) or MIN_LAYERS)
            high = min(MAX_LAYERS, _int(layers.get("max")) or MAX_LAYERS)
            if low <= high:
                default = _int(layers.get("default")) or low
                values["layers"] = LayerRange(low, high, min(max(default, low), high))
        return dataclasses.replace(base, **values)

    def who(self) -> str:
        named = f"The model {self.model!r}" if self.model else "The chosen model"
        return f"{named} ({self.family})" if self.family else named

    def mode_refusal(self, mode: str) -> Optional[str]:
        """Why ``mode`` cannot run on this model (a sentence), None when it can."""
        if mode in self.modes:
            return None
        offered = ", ".join(MODE_WORDS.get(m, m) for m in self.modes) or "nothing"
        return (
            f"{self.who()} cannot {MODE_WORDS.get(mode, mode)}; it can {offered}. "
            "Pick another model in Advanced, or change the selection."
        )

    def feature_refusal(self, feature: str) -> Optional[str]:
        """Why live / controlnet / loras are greyed out, None when available."""
        if getattr(self, feature, True):
            return None
        words = {"live": "live painting", "controlnet": "control layers", "loras": "LoRAs"}
        return f"{self.who()} does not support {words.get(feature, feature)}."


def for_model(models: Optional[ModelsInfo], name: str) -> Capabilities:
    """The capabilities of checkpoint ``name`` ("" = the server default) in ``models``."""
    if models is None:
        return Capabilities(model=name)
    wanted = name or models.default or ""
    for checkpoint in models.checkpoints:
        if checkpoint.name == wanted:
            return Capabilities.parse(checkpoint.capabilities, wanted, checkpoint.family)
    return Capabilities(model=wanted)


def check_mode(models: Optional[ModelsInfo], name: str, mode: str) -> Capabilities:
    """The model's capabilities; InvalidSetting (a sentence) when it lacks ``mode``."""
    capabilities = for_model(models, name)
    refusal = capabilities.mode_refusal(mode)
    if refusal is not None:
        raise InvalidSetting(refusal)
    return capabilities


def effective_settings(settings: Any, capabilities: Capabilities) -> Any:
    """``settings`` as sent to this model: no negative prompt when the model has none, its
    default CFG when it has no CFG. The artist's saved values are kept (a copy is changed)."""
    changes: Dict[str, Any] = {}
    if not capabilities.negative_prompt and settings.negative_prompt:
        changes["negative_prompt"] = ""
    if not capabilities.cfg and capabilities.default_cfg_scale is not None:
        changes["cfg_scale"] = capabilities.default_cfg_scale
    return dataclasses.replace(settings, **changes) if changes else settings


def able(models: Optional[ModelsInfo], what: str) -> List[str]:
    """Names of the checkpoints that can ``what`` ("edit" or "layers"), in the server's order."""
    if models is None:
        return []
    return [
        c.name
        for c in models.checkpoints
        if getattr(Capabilities.parse(c.capabilities, c.name, c.family), what) is not None
    ]


def ability_refusal(models: Optional[ModelsInfo], name: str, what: str) -> Optional[str]:
    """Why checkpoint ``name`` cannot ``what`` ("edit" or "layers"), naming the installed
    checkpoints that can; None when it can."""
    capabilities = for_model(models, name)
    if getattr(capabilities, what) is not None:
        return None
    words = MODE_WORDS[what]
    can = able(models, what)
    if not can:
        return (
            f"No checkpoint on the server can {words}: install one that can (FLUX.2 klein or "
            "Qwen-Image-Edit edit, Qwen-Image-Layered decomposes) and reconnect."
        )
    names = ", ".join(repr(n) for n in can)
    return (
        f"{capabilities.who()} cannot {words}. Checkpoints that can: {names}. Pick one in Advanced."
    )
