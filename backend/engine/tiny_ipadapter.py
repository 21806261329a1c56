"""Tiny IP-Adapters and a tiny CLIP vision encoder, built in code, for tests and demos.

``write_tiny_references(models_dir)`` writes, in ComfyUI's layout, ``clip_vision/`` one tiny
``CLIPVisionModelWithProjection`` (transformers key names) and ``ipadapter/`` one plain
IP-Adapter per tiny UNet (SD1.5 and SDXL), and for SD1.5 a plain "face" one and an IP-Adapter
Plus (Resampler) "plus-face" one, whose ``ip_adapter.N``
key numbering and shapes are the ones diffusers' loader expects for that UNet. Weights are
seeded: every build is identical. ``python -m backend.engine.tiny_ipadapter MODELS_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ENCODER = "tiny-clip-vision.safetensors"
ADAPTERS: dict[str, str] = {
    "tiny-ipadapter-sd15.safetensors": "sd15",
    "tiny-ipadapter-sdxl.safetensors": "sdxl",
    "tiny-ipadapter-face-sd15.safetensors": "sd15",
    "tiny-ipadapter-plus-face-sd15.safetensors": "sd15",  # a Resampler ("plus") projection
}
VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 16,
    "hidden_act": "quick_gelu",
}
TOKENS = 4  # image tokens of a plain IP-Adapter (diffusers reads 4)


def encoder_state(seed: int = 0) -> dict:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION))
    return {key: value.contiguous() for key, value in model.state_dict().items()}


def _cross_attention_sizes(family: str) -> tuple[int, list[int]]:
    """(cross-attention width, hidden size of each cross-attention layer in processor order)
    of the tiny UNet of ``family``."""
    from diffusers import UNet2DConditionModel

    from backend.engine.tiny import unet_config

    unet = UNet2DConditionModel(**unet_config(family))
    channels = list(unet.config.block_out_channels)
    sizes = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            sizes.append(channels[-1])
        elif name.startswith("up_blocks"):
            sizes.append(list(reversed(channels))[int(name.split(".")[1])])
        else:
            sizes.append(channels[int(name.split(".")[1])])
    return int(unet.config.cross_attention_dim), sizes


def adapter_state(family: str, seed: int = 1, plus: bool = False) -> dict:
    """A plain (or ``plus``) IP-Adapter for the tiny ``family`` UNet: ``image_proj.*`` and
    ``ip_adapter.{1,3,5,...}.to_{k,v}_ip.weight`` as the original files name them."""
    import torch

    cross, sizes = _cross_attention_sizes(family)
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    if plus:
        state = _plus_projection(cross, generator)
    else:
        state = {
            "image_proj.proj.weight": normal(TOKENS * cross, VISION["projection_dim"], std=0.5),
            "image_proj.proj.bias": normal(TOKENS * cross, std=0.1),
            "image_proj.norm.weight": torch.ones(cross),
            "image_proj.norm.bias": torch.zeros(cross),
        }
    for index, hidden in enumerate(sizes):
        key = 2 * index + 1
        state[f"ip_adapter.{key}.to_k_ip.weight"] = normal(hidden, cross, std=0.5)
        state[f"ip_adapter.{key}.to_v_ip.weight"] = normal(hidden, cross, std=0.5)
    return state


def _plus_projection(cross: int, generator: Any) -> dict:
    """A tiny IP-Adapter Plus Resampler in the original key layout (``layers.N.0.to_kv``,
    ``layers.N.1.1``, ...), reading the tiny encoder's hidden states."""
    import torch
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    module = IPAdapterPlusImageProjection(
        embed_dims=VISION["hidden_size"], output_dims=cross, hidden_dims=64, heads=1
    )
    state: dict = {}
    renames = (
        ("ln0", "0.norm1"),
        ("ln1", "0.norm2"),
        ("attn.to_q", "0.to_q"),
        ("attn.to_out.0", "0.to_out"),
        ("ff.0", "1.0"),
        ("ff.1.net.0.proj", "1.1"),
        ("ff.1.net.2", "1.3"),
    )
    for key, value in module.state_dict().items():
        value = value + torch.randn(value.shape, generator=generator) * 0.05
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        for old, new in renames:
            key = key.replace(f".{old}.", f".{new}.")
        state[f"image_proj.{key}"] = value
    for index in range(len(module.layers)):
        layer = module.layers[index]
        state[f"image_proj.layers.{index}.0.to_kv.weight"] = torch.cat(
            [layer.attn.to_k.weight, layer.attn.to_v.weight]
        ).detach()
    return state


def write_tiny_references(models_dir: str | Path) -> dict[str, Path]:
    """Write the tiny encoder and adapters under ``models_dir`` (idempotent); their paths."""
    from safetensors.torch import save_file

    from backend.engine.ipadapter_files import FAMILY_KEY

    root = Path(models_dir)
    written: dict[str, Path] = {}
    encoder = root / "clip_vision" / ENCODER
    if not encoder.is_file():
        encoder.parent.mkdir(parents=True, exist_ok=True)
        metadata = {k: str(VISION[k]) for k in ("num_attention_heads", "hidden_act")}
        save_file(encoder_state(), str(encoder), metadata=metadata)
    written[ENCODER] = encoder
    for seed, (name, family) in enumerate(ADAPTERS.items(), start=1):
        path = root / "ipadapter" / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            state = adapter_state(family, seed, plus="plus" in name)
            save_file(state, str(path), metadata={FAMILY_KEY: family})
        written[name] = path
    return written


if __name__ == "__main__":  # pragma: no cover - a convenience for demos and the Krita tests
    for name, path in write_tiny_references(sys.argv[1]).items():
        print(f"{name}: {path}")
