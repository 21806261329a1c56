"""Small header readers the family modules share (tensor names and shapes only)."""

from __future__ import annotations

from backend.engine.families.base import Header

#: the UNet prefix of original-layout (LDM / A1111) checkpoints
UNET = "model.diffusion_model."


def any_prefix(keys: Header, *prefixes: str) -> bool:
    return any(key.startswith(prefixes) for key in keys)


def cross_attention_dim(keys: Header, prefix: str = "") -> int | None:
    """The text width a UNet's cross-attention takes, from its first ``attn2.to_k`` weight."""
    for key, shape in keys.items():
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return shape[1]
    return None


def unet_in_channels(keys: Header) -> int | None:
    """The input channels of an LDM-layout UNet (4 regular, 9 inpaint), None without one."""
    conv_in = keys.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        return None
    return conv_in[1] if len(conv_in) == 4 else 0
