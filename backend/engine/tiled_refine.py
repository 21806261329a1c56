"""Tiled diffusion refine: img2img over overlapping native-size tiles, blended seamlessly.

Used by the upscale mode's refine pass and by high-resolution generation (hires.py). Each
tile is one img2img denoise of its crop at the tile's own size (no resizing, so full detail),
starting from the crop of ONE seeded noise field for the whole latent canvas (tiles.py), and
blended into the result with feathered weights as soon as it finishes. Progress counts every
step of every tile; the preview is the picture assembled so far; the caller's cancel check
runs every step (through ``on_step``) and before each tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from backend.engine.tiles import (
    BandBlender,
    Tile,
    crop_noise,
    default_overlap,
    noise_field,
    pad_to_multiple,
    tile_layout,
)

PREVIEW_SIDE = 256
LATENT_CHANNELS = 4

#: (step done in the whole job, total steps, preview RGB or None) -> None; may raise Cancelled
Report = Callable[[int, int, "np.ndarray | None"], None]
#: (tile, its (h, w, 3) crop, its noise (1, C, h/8, w/8)) -> a denoise task for that tile
MakeTask = Callable[[Tile, np.ndarray, torch.Tensor], object]
#: (task, step callback (step, total, latents)) -> (1, h, w, 3) uint8
Denoise = Callable[[object, Callable[[int, int, torch.Tensor], None]], np.ndarray]


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a (width x height) picture lie (padded to multiples of 8)."""

    width: int
    height: int
    tile: int
    overlap: int
    tiles: tuple[Tile, ...]


def plan_tiles(width: int, height: int, tile: int, overlap: int | None = None) -> TileGrid:
    padded_w, padded_h = width + (-width) % 8, height + (-height) % 8
    tile = max(64, tile - tile % 8)
    used = default_overlap(tile) if overlap is None else min(overlap - overlap % 8, tile // 2)
    tiles = tile_layout(padded_w, padded_h, tile, used)
    return TileGrid(width, height, tile, used, tuple(tiles))


def refine_steps(width: int, height: int, tile: int, overlap: int | None, steps: int) -> int:
    """Denoising steps a refine of this size runs: ``steps`` per tile."""
    return len(plan_tiles(width, height, tile, overlap).tiles) * steps


def preview_of(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """A cheap small copy (strided) of a big picture for progress previews."""
    stride = max(1, int(np.ceil(max(image.shape[:2]) / side)))
    return np.ascontiguousarray(image[::stride, ::stride, :3])


def refine_tiled(
    image: np.ndarray,
    grid: TileGrid,
    seed: int,
    make_task: MakeTask,
    denoise: Denoise,
    steps: int,
    report: Report,
    done_before: int = 0,
    total: int | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 refined tile by tile: the same size, blended (see the module doc).

    ``report`` gets every step of every tile as ``done_before + step`` of ``total``."""
    total = total if total is not None else done_before + len(grid.tiles) * steps
    padded = pad_to_multiple(np.ascontiguousarray(image[..., :3]))
    noise = noise_field(seed, LATENT_CHANNELS, padded.shape[1], padded.shape[0])
    blender = BandBlender(padded, list(grid.tiles))
    preview = preview_of(padded)
    for index, tile in enumerate(grid.tiles):
        before = done_before + index * steps
        report(before, total, preview)  # also the cancel point before a tile starts
        crop = padded[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
        task = make_task(tile, np.ascontiguousarray(crop), crop_noise(noise, tile))

        def on_step(
            step: int,
            _total: int,
            _latents: torch.Tensor,
            _before: int = before,
            _preview: np.ndarray = preview,
        ) -> None:
            report(_before + min(step, steps), total, _preview)

        result = denoise(task, on_step)
        blender.add(tile, np.asarray(result)[0, :, :, :3])
        preview = preview_of(blender.result)
    refined = blender.finish()[: grid.height, : grid.width]
    report(done_before + len(grid.tiles) * steps, total, preview_of(refined))
    return refined
