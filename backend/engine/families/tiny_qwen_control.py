"""A tiny Qwen-Image ControlNet (``QwenImageControlNetModel``) matching the tiny transformer
of ``tiny_qwen``, written in the diffusers layout InstantX ships (config in the metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.engine.families import tiny_qwen


def controlnet_config() -> dict[str, Any]:
    base = tiny_qwen.transformer_config("base")
    return {
        "patch_size": base["patch_size"],
        "in_channels": base["in_channels"],
        "out_channels": base["out_channels"],
        "num_layers": base["num_layers"],
        "attention_head_dim": base["attention_head_dim"],
        "num_attention_heads": base["num_attention_heads"],
        "joint_attention_dim": base["joint_attention_dim"],
        "axes_dims_rope": base["axes_dims_rope"],
        "extra_condition_channels": 0,
    }


def build_controlnet(seed: int = 0) -> Any:
    """The tiny ControlNet; diffusers zero-initialises its input embedder and output blocks
    (a fresh ControlNet adds nothing), so they get seeded noise here."""
    import torch
    from diffusers import QwenImageControlNetModel

    torch.manual_seed(seed * 1000 + 11)
    model = QwenImageControlNetModel(**controlnet_config()).eval()
    generator = torch.Generator().manual_seed(seed * 1000 + 12)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("controlnet_blocks.", "controlnet_x_embedder.")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def write_controlnet(target: str | Path, *, seed: int = 0) -> Path:
    from backend.engine.tiny import _save_atomic

    state = {k: v.contiguous() for k, v in build_controlnet(seed).state_dict().items()}
    _save_atomic(state, {tiny_qwen.CONFIG_KEY: json.dumps(controlnet_config())}, target)
    return Path(target)
