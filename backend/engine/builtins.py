"""The tiny built-in models as inventory entries (always listed; files written on first use)."""

from __future__ import annotations

from backend.engine.architecture import signature_of_config, widths
from backend.engine.tiny import (
    TINY_CHECKPOINTS,
    TINY_CONTROLNETS,
    TINY_LORAS,
    controlnet_config,
    unet_config,
)
from backend.engine.types import CheckpointEntry, ControlNetEntry, Inventory, LoraEntry

BUILTIN = "builtin:"


def builtin_inventory() -> Inventory:
    """The tiny built-ins, always available (their files are written when first loaded)."""
    return Inventory(
        checkpoints=[
            CheckpointEntry(
                name, family, inpaint, BUILTIN + name, _tiny_widths(unet_config(family, inpaint))
            )
            for name, (family, inpaint) in TINY_CHECKPOINTS.items()
        ],
        controlnets=[
            ControlNetEntry(
                name, family, "any", BUILTIN + name, _tiny_widths(controlnet_config(family))
            )
            for name, family in TINY_CONTROLNETS.items()
        ],
        loras=[
            LoraEntry(
                name, family, BUILTIN + name, "lora", unet_config(family)["cross_attention_dim"]
            )
            for name, family in TINY_LORAS.items()
        ],
    )


def _tiny_widths(config: dict) -> tuple[int, int] | None:
    return widths(signature_of_config(config))
