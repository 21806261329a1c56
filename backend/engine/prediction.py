"""What a checkpoint predicts (noise or v) and the scheduler settings that follow from it.

A v-prediction checkpoint run as epsilon gives a grey, washed-out picture, so a single file
must say what it is. The sources, each later one winning:

1. the model's scheduler config (a diffusers folder's ``scheduler_config.json``, our embedded
   config, the shipped family configs: epsilon);
2. marker keys in the file's state dict, as ComfyUI, Forge and reForge read them (NoobAI-XL
   v-pred and other v-prediction SDXL merges carry them): ``v_pred`` (v-prediction) and
   ``ztsnr`` (trained with zero terminal SNR);
3. a sidecar YAML beside the file (``model.yaml`` or ``model.yml`` for
   ``model.safetensors``), the per-model override: A1111's LDM config key
   ``parameterization: "v"`` (or ``"eps"``) anywhere in it, or ``prediction_type:
   v_prediction | epsilon`` and ``zero_terminal_snr: true | false``.

Zero terminal SNR means diffusers' ``rescale_betas_zero_snr`` with ``"trailing"`` timestep
spacing (the schedule then starts at pure noise). The settings go into the loaded pipeline's
scheduler config, which every sampler is built from (``schedulers.make_scheduler``), so they
hold whatever sampler a job picks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

EPSILON = "epsilon"
V_PREDICTION = "v_prediction"
V_MARKER = "v_pred"
ZTSNR_MARKER = "ztsnr"
SIDECAR_SUFFIXES = (".yaml", ".yml")
#: Sidecar values -> prediction type (A1111/LDM ``parameterization`` and diffusers names).
_TYPES = {
    "v": V_PREDICTION,
    "v_prediction": V_PREDICTION,
    "eps": EPSILON,
    "epsilon": EPSILON,
}
_ZTSNR_KEYS = ("zero_terminal_snr", "rescale_betas_zero_snr", "ztsnr")


@dataclass(frozen=True)
class Prediction:
    """The prediction a checkpoint was trained for, and where that was read."""

    type: str = EPSILON  # "epsilon" | "v_prediction"
    zero_terminal_snr: bool = False
    source: str = "config"  # "config" | "marker keys" | the sidecar's file name

    def scheduler_overrides(self) -> dict[str, Any]:
        """The scheduler config keys that run this prediction."""
        overrides: dict[str, Any] = {"prediction_type": self.type}
        if self.zero_terminal_snr:
            overrides.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
        return overrides


def from_scheduler_config(config: Mapping[str, Any]) -> Prediction:
    """What a scheduler config runs (the fallback, and what a job records)."""
    return Prediction(
        type=str(config.get("prediction_type", EPSILON)),
        zero_terminal_snr=bool(config.get("rescale_betas_zero_snr", False)),
    )


def from_marker_keys(keys: Iterable[str]) -> Prediction | None:
    """v-prediction when the state dict has a ``v_pred`` key (``ztsnr``: zero terminal SNR),
    else None (the config decides)."""
    names = set(keys)
    if V_MARKER not in names:
        return None
    return Prediction(V_PREDICTION, ZTSNR_MARKER in names, "marker keys")


def sidecar_path(model_file: str | Path) -> Path | None:
    """The sidecar YAML beside ``model_file``, if there is one."""
    path = Path(model_file)
    for suffix in SIDECAR_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _find(tree: Any, keys: tuple[str, ...]) -> tuple[str, Any] | None:
    """The first of ``keys`` anywhere in a parsed YAML tree (depth first), with its value."""
    if isinstance(tree, Mapping):
        for key in keys:
            if key in tree:
                return key, tree[key]
        for value in tree.values():
            found = _find(value, keys)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for value in tree:
            found = _find(value, keys)
            if found is not None:
                return found
    return None


def from_sidecar(path: Path, base: Prediction) -> Prediction | None:
    """The override in the sidecar ``path`` on top of ``base``; None when it says nothing
    about prediction. Raises ModelLoadError, naming the file and key, for what it cannot mean."""
    import yaml

    try:
        tree = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(
            f"The model's settings file {path.name} is not readable YAML."
        ) from exc
    kind = _find(tree, ("parameterization", "prediction_type"))
    ztsnr = _find(tree, _ZTSNR_KEYS)
    if kind is None and ztsnr is None:
        return None
    prediction_type = base.type
    if kind is not None:
        key, value = kind
        prediction_type = _TYPES.get(str(value).strip().lower(), "")
        if not prediction_type:
            raise ModelLoadError(
                f'{path.name}: {key} is {value!r}; write "v" (v-prediction) or "eps".'
            )
    zero_snr = base.zero_terminal_snr if prediction_type == base.type else False
    if ztsnr is not None:
        key, value = ztsnr
        if not isinstance(value, bool):
            raise ModelLoadError(f"{path.name}: {key} is {value!r}; write true or false.")
        zero_snr = value
    return Prediction(prediction_type, zero_snr, path.name)


def detect_prediction(
    model_file: str | Path, keys: Iterable[str], config: Mapping[str, Any]
) -> Prediction:
    """The prediction of the single-file checkpoint ``model_file`` whose state dict has
    ``keys`` and whose scheduler was built from ``config`` (see the module doc)."""
    prediction = from_marker_keys(keys) or from_scheduler_config(config)
    sidecar = sidecar_path(model_file)
    if sidecar is not None:
        prediction = from_sidecar(sidecar, prediction) or prediction
    return prediction


def apply_prediction(pipe: Any, prediction: Prediction) -> None:
    """Give ``pipe`` a scheduler that runs ``prediction`` (same class and schedule)."""
    scheduler = pipe.scheduler
    overrides = prediction.scheduler_overrides()
    current = dict(scheduler.config)
    if all(current.get(key) == value for key, value in overrides.items()):
        return
    pipe.scheduler = type(scheduler).from_config(current, **overrides)
    log.info("running as %s (%s)", describe(prediction), prediction.source)


def describe(prediction: Prediction) -> str:
    suffix = " with zero terminal SNR" if prediction.zero_terminal_snr else ""
    return f"{prediction.type}{suffix}"
