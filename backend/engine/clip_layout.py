"""CLIP text encoder weight names as files spell them, whatever transformers is installed.

Checkpoints (A1111 ``cond_stage_model.transformer.text_model.*``), kohya LoRAs
(``lora_te_text_model_*``) and diffusers LoRAs (``text_encoder.text_model.*``) name CLIP-L's
modules the way transformers 4's ``CLIPTextModel`` did: under ``text_model.``. transformers 5's
``CLIPTextModel`` has no ``text_model`` submodule any more (its modules are ``embeddings``,
``encoder``, ``final_layer_norm``); ``CLIPTextModelWithProjection`` keeps it. These helpers map
between a loaded model's own paths and the classic ones, so files read and written here keep
the layout artists' files have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CLASSIC_PREFIX = "text_model."


def is_flat_clip(model: Any) -> bool:
    """True for a transformers 5 ``CLIPTextModel`` (no ``text_model`` submodule)."""
    return type(model).__name__ == "CLIPTextModel" and not hasattr(model, "text_model")


def classic_path(model: Any, path: str) -> str:
    """A module or weight path of ``model`` as checkpoint and LoRA files name it."""
    if path and is_flat_clip(model) and not path.startswith(CLASSIC_PREFIX):
        return CLASSIC_PREFIX + path
    return path


def classic_state(model: Any) -> dict[str, torch.Tensor]:
    """``model``'s weights under their classic names, without the ``position_ids`` buffer."""
    return {
        classic_path(model, key): value
        for key, value in model.state_dict().items()
        if not key.endswith("position_ids")
    }


def model_state(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """A state dict under classic names, renamed to what ``model.load_state_dict`` expects."""
    if not is_flat_clip(model):
        return state
    cut = len(CLASSIC_PREFIX)
    return {key[cut:] if key.startswith(CLASSIC_PREFIX) else key: v for key, v in state.items()}


def final_layer_norm(model: Any) -> Any:
    """The final LayerNorm of a CLIP text model (clip skip applies it to an earlier layer)."""
    return getattr(model, "text_model", model).final_layer_norm
