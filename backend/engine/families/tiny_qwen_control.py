"""Tiny Qwen-Image add-ons matching the tiny transformer of ``tiny_qwen``: a ControlNet
(``QwenImageControlNetModel``, in the diffusers layout InstantX ships, config in the metadata)
and a LoRA (diffusers/PEFT, kohya or bare dotted layout)."""

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


def write_lora(
    target: str | Path,
    *,
    seed: int = 5,
    rank: int = 4,
    kohya: bool = False,
    layout: str = "peft",
    prefix: str = "",
    alpha: float | None = None,
) -> Path:
    """A tiny Qwen-Image LoRA on the first block's attention and image MLP, seeded and strong
    enough to change a 2-step picture. ``layout``: "peft" (diffusers/PEFT,
    ``transformer.*.lora_A/B``), "kohya" (also ``kohya=True``: ``lora_unet_*.lora_down/up``,
    alpha = rank) or "dotted" (Qwen-Image-Lightning's ``{prefix}transformer_blocks.0.attn.to_q
    .lora_down/up``, with ``{prefix}...alpha`` when ``alpha`` is given: up is scaled by
    rank / alpha so every layout changes the weights by the same amount).

    Raises ValueError for another ``layout``."""
    import torch

    layout = "kohya" if kohya else layout
    if layout not in ("peft", "kohya", "dotted"):
        raise ValueError(f"layout={layout!r}: must be 'peft', 'kohya' or 'dotted'")
    config = tiny_qwen.transformer_config("base")
    inner = config["attention_head_dim"] * config["num_attention_heads"]
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    for name, out in (("attn.to_q", 1), ("attn.to_k", 1), ("img_mlp.net.0.proj", 4)):
        key = f"transformer.transformer_blocks.0.{name}"
        state[key + ".lora_A.weight"] = torch.randn(rank, inner, generator=generator)
        state[key + ".lora_B.weight"] = torch.randn(inner * out, rank, generator=generator)
    if layout == "peft":
        return _save_lora(state, Path(target))
    flat: dict[str, Any] = {}
    for key, value in state.items():
        module, kind = key[len("transformer.") :].rsplit(".lora_", 1)
        if layout == "kohya":  # lora_unet_transformer_blocks_0_attn_to_q + alpha = rank
            name, scale, layer_alpha = "lora_unet_" + module.replace(".", "_"), 1.0, float(rank)
        else:
            name, layer_alpha = prefix + module, alpha
            scale = 1.0 if alpha is None else rank / alpha
        if kind.startswith("A"):
            flat[name + ".lora_down.weight"] = value
        else:
            flat[name + ".lora_up.weight"] = value * scale
        if layer_alpha is not None:
            flat[name + ".alpha"] = torch.tensor(float(layer_alpha))
    return _save_lora(flat, Path(target))


def _save_lora(state: dict[str, Any], target: Path) -> Path:
    from backend.engine.tiny import _save_atomic

    _save_atomic({k: v.contiguous() for k, v in state.items()}, {}, target)
    return target
