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
from typing import Any, Dict, Optional, Tuple

from .errors import InvalidSetting
from .protocol import MODES, ModelsInfo

#: how the docker and the refusals name each mode
MODE_WORDS = {
    "txt2img": "generate a new image",
    "img2img": "refine an image",
    "inpaint": "inpaint a selection",
    "outpaint": "outpaint into transparent pixels",
    "upscale": "upscale or refine detail",
}


@dataclass(frozen=True)
class Capabilities:
    model: str = ""  # the checkpoint's name ("" when unknown)
    family: str = ""
    modes: Tuple[str, ...] = MODES
    negative_prompt: bool = True
    cfg: bool = True
    controlnet: bool = True
    loras: bool = True
    live: bool = True
    native_size: Optional[int] = None
    size_multiple: int = 8
    default_cfg_scale: Optional[float] = None
    default_steps: Optional[int] = None

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
        return dataclasses.replace(base, **values)

    def _who(self) -> str:
        named = f"The model {self.model!r}" if self.model else "The chosen model"
        return f"{named} ({self.family})" if self.family else named

    def mode_refusal(self, mode: str) -> Optional[str]:
        """Why ``mode`` cannot run on this model (a sentence), None when it can."""
        if mode in self.modes:
            return None
        offered = ", ".join(MODE_WORDS.get(m, m) for m in self.modes) or "nothing"
        return (
            f"{self._who()} cannot {MODE_WORDS.get(mode, mode)}; it can {offered}. "
            "Pick another model in Advanced, or change the selection."
        )

    def feature_refusal(self, feature: str) -> Optional[str]:
        """Why live / controlnet / loras are greyed out, None when available."""
        if getattr(self, feature, True):
            return None
        words = {"live": "live painting", "controlnet": "control layers", "loras": "LoRAs"}
        return f"{self._who()} does not support {words.get(feature, feature)}."


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
