"""ControlNets of the transformer families (Flux.1, Z-Image): a diffusers-layout file (how
InstantX, Shakker and Alibaba ship them) or a diffusers folder, loaded as the family's
``controlnet_class``.

The config comes from, in order: a folder's config.json, the config embedded in the file's
metadata (our tiny files), a ``config.json`` beside the file, else what the family reads off
the header (``Family.controlnet_config``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.engine.families.base import Family, Header

CONFIG_KEY = "diffusion_layers.dit_config"


def flux_controlnet_config(header: Header) -> dict[str, Any]:
    """A FluxControlNetModel config read off a diffusers-layout header (InstantX/Union)."""
    keys = dict(header)
    inner, in_channels = keys["x_embedder.weight"]
    head = keys["transformer_blocks.0.attn.norm_k.weight"][0]
    count = lambda prefix: len({k.split(".")[1] for k in keys if k.startswith(prefix)})  # noqa: E731
    axes = [16, 56, 56] if head == 128 else [head // 4, 3 * head // 8, 3 * head // 8]
    mode = keys.get("controlnet_mode_embedder.weight")
    hint = any(key.startswith("input_hint_block.") for key in keys)
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "num_layers": count("transformer_blocks."),
        "num_single_layers": count("single_transformer_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": inner // head,
        "joint_attention_dim": keys["context_embedder.weight"][1],
        "pooled_projection_dim": keys["time_text_embed.text_embedder.linear_1.weight"][1],
        "guidance_embeds": any("guidance_embedder" in key for key in keys),
        "axes_dims_rope": axes,
        "num_mode": mode[0] if mode else None,
        "conditioning_embedding_channels": 16 if hint else None,
    }


def _config(path: Path, family: Family, header: Header, metadata: dict[str, str]) -> dict:
    if CONFIG_KEY in metadata:
        return json.loads(metadata[CONFIG_KEY])
    beside = path.with_name("config.json")
    if beside.is_file():
        return json.loads(beside.read_text())
    if family.controlnet_config is None:
        raise ValueError(f"{family.label} ControlNet files need a config.json beside them")
    return family.controlnet_config(header)


def load_dit_controlnet(path: Path, family: Family, dtype: Any) -> Any:
    """The family's ControlNet model from ``path`` (file or folder), in ``dtype``."""
    import diffusers
    from safetensors.torch import load_file

    from backend.engine.detect import read_header

    model_class = getattr(diffusers, family.controlnet_class)
    if path.is_dir():
        return model_class.from_pretrained(str(path), torch_dtype=dtype)
    header, metadata = read_header(path)
    config = {k: v for k, v in _config(path, family, header, metadata).items() if k[0] != "_"}
    model = model_class.from_config(config)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.to(dtype).eval()
