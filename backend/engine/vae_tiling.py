"""Tiled VAE encode/decode above a pixel threshold, so a large denoise never needs the whole
picture's VAE activations at once.

diffusers' ``AutoencoderKL.enable_tiling`` encodes and decodes in overlapping tiles and blends
the overlaps linearly (seamless for the picture sizes we run). Below the threshold the plain
path runs (tiling costs time and changes pixels slightly). The tiled refine keeps every denoise
at tile size, so this matters for the larger native first passes and direct large img2img.
"""

from __future__ import annotations

from typing import Any

VAE_TILE_PIXELS = 1536 * 1536


def use_vae_tiling(pipe: Any, width: int, height: int, threshold: int = VAE_TILE_PIXELS) -> bool:
    """Switch the pipeline's (shared) VAE to tiles for a ``width`` x ``height`` denoise when it
    has more than ``threshold`` pixels, back to the plain path otherwise; returns whether tiled."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return False
    tiled = width * height > threshold
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    return tiled
