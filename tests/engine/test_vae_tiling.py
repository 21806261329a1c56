"""Tiled VAE above a pixel threshold (vae_tiling.py), on the tiny model's real VAE."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.types import EngineConfig  # noqa: E402
from backend.engine.vae_tiling import VAE_TILE_PIXELS, use_vae_tiling  # noqa: E402


def test_large_denoises_decode_in_tiles_small_ones_do_not(tiny_models_dir: Path) -> None:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    pipe = Engine(config)._load("tiny").pipe
    vae = pipe.vae
    assert not use_vae_tiling(pipe, 512, 512) and not vae.use_tiling
    assert use_vae_tiling(pipe, 2048, 2048) and vae.use_tiling  # over VAE_TILE_PIXELS
    assert 2048 * 2048 > VAE_TILE_PIXELS >= 1024 * 1024
    # The tiled decode of a latent larger than one VAE tile has the full size.
    vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8
    latents = torch.randn(
        1, vae.config.latent_channels, 24, 24, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        tiled = vae.decode(latents).sample
        use_vae_tiling(pipe, 64, 64)
        plain = vae.decode(latents).sample
    assert tiled.shape == plain.shape == (1, 3, 192, 192)
    assert torch.isfinite(tiled).all() and not vae.use_tiling
