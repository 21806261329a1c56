"""The ``sd15_upscale_2x_2048`` reference written plainly with diffusers: what an artist's
script does without our engine (Ultimate-SD-Upscale style).

Lanczos to the target size, then 512 px tiles with 64 px overlap, each through the plain
img2img pipeline at the scenario's strength with its own seeded generator, pasted back with a
linear feather over the overlap. Same model, sampler, steps, CFG, strength, tile size and
overlap as our side (``Scenario.job_params``); it has no shared noise field and no progress.
"""

from __future__ import annotations

import resource
from typing import Any

import numpy as np
from PIL import Image

TILE = 512
OVERLAP = 64


def starts(length: int, tile: int = TILE, overlap: int = OVERLAP) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    out = list(range(0, length - tile, step))
    return [*out, length - tile]


def _weights(size: int, before: bool, after: bool, overlap: int = OVERLAP) -> np.ndarray:
    ramp = np.ones(size, np.float32)
    fade = np.linspace(1.0 / overlap, 1.0, overlap, dtype=np.float32)
    if before:
        ramp[:overlap] = fade
    if after:
        ramp[-overlap:] = fade[::-1]
    return ramp


def plain_tiled_upscale(
    pipe: Any, image: np.ndarray, factor: float, kwargs: dict[str, Any], seed: int
) -> Image.Image:
    """(H, W, 3|4) uint8 -> the refined picture (W*factor x H*factor) as a PIL image."""
    import torch

    width, height = round(image.shape[1] * factor), round(image.shape[0] * factor)
    big = np.asarray(
        Image.fromarray(np.ascontiguousarray(image[..., :3])).resize((width, height), Image.LANCZOS)
    )
    total = np.zeros((height, width, 3), np.float32)
    weight = np.zeros((height, width, 1), np.float32)
    xs, ys = starts(width), starts(height)
    for row, y in enumerate(ys):
        for column, x in enumerate(xs):
            crop = Image.fromarray(big[y : y + TILE, x : x + TILE])
            generator = torch.Generator("cpu").manual_seed(seed + row * len(xs) + column)
            out = pipe(image=crop, generator=generator, **kwargs).images[0]
            tile = np.asarray(out, np.float32)
            h, w = tile.shape[:2]
            mask = (
                _weights(h, row > 0, row < len(ys) - 1)[:, None]
                * _weights(w, column > 0, column < len(xs) - 1)[None, :]
            )[..., None]
            total[y : y + h, x : x + w] += tile * mask
            weight[y : y + h, x : x + w] += mask
    result = np.clip(total / np.maximum(weight, 1e-6) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(result)


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss is in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
