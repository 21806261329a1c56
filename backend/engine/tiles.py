"""Tile layout, feathered blending and the shared noise field of tiled work (upscale, refine).

A picture larger than the model's native size is cut into overlapping tiles of about the
native size. Tile origins are multiples of 8 (a latent pixel), so one seeded noise field for
the whole latent canvas can be cropped per tile: neighbouring tiles start from the same noise
where they overlap. Each tile's result is weighted by a feather that ramps from 0 to 1 across
the overlap on the sides it shares with a neighbour (never on the picture's own border); the
ramps of two neighbours sum to 1, so a smooth picture stays smooth across every border.

``BandBlender`` keeps float sums only for the current row of tiles and writes finished rows
into the uint8 result, so blending an 8192 x 8192 picture needs the picture plus one band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.engine.errors import InvalidRequest

LATENT = 8  # pixels per latent pixel (SD VAEs)
MIN_OVERLAP = 16


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int
    row: int = 0
    column: int = 0


def default_overlap(tile: int) -> int:
    """Automatic overlap: an eighth of the tile, at least 16 px, a multiple of 8."""
    return max(MIN_OVERLAP, (tile // 8) // LATENT * LATENT)


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: evenly spread, multiples of 8, the last one flush with
    the end; neighbours overlap by at least ``overlap`` (``length`` a multiple of 8)."""
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise InvalidRequest("tile_overlap", overlap, f"expected 0..{tile - 8} px")
    count = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    starts = [round(last * index / (count - 1) / LATENT) * LATENT for index in range(count)]
    return sorted(set(starts))


def tile_layout(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering ``width`` x ``height`` (both multiples of 8)."""
    if width % LATENT or height % LATENT:
        raise InvalidRequest("size", f"{width}x{height}", "expected multiples of 8 (pad first)")
    if tile < 64 or tile % LATENT:
        raise InvalidRequest("tile_size", tile, "expected a multiple of 8, at least 64 px")
    tiles = []
    for row, y in enumerate(axis_starts(height, tile, overlap)):
        for column, x in enumerate(axis_starts(width, tile, overlap)):
            tiles.append(Tile(x, y, min(tile, width), min(tile, height), row, column))
    return tiles


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D weights: rises over ``before`` px, falls over ``after`` px (smoothstep, >0)."""
    weights = np.ones(length, np.float32)
    for size, reverse in ((before, False), (after, True)):
        if size <= 0:
            continue
        t = (np.arange(size, dtype=np.float32) + 0.5) / size
        ramp = t * t * (3.0 - 2.0 * t)
        if reverse:
            weights[length - size :] *= ramp[::-1]
        else:
            weights[:size] *= ramp
    return weights


def feather(tile: Tile, tiles: list[Tile]) -> np.ndarray:
    """(h, w) float32 weights of ``tile``: ramps across the overlap with each neighbour."""
    left = max(
        (t.x + t.width - tile.x for t in tiles if t.row == tile.row and t.x < tile.x), default=0
    )
    right = max(
        (tile.x + tile.width - t.x for t in tiles if t.row == tile.row and t.x > tile.x), default=0
    )
    top = max(
        (t.y + t.height - tile.y for t in tiles if t.column == tile.column and t.y < tile.y),
        default=0,
    )
    bottom = max(
        (tile.y + tile.height - t.y for t in tiles if t.column == tile.column and t.y > tile.y),
        default=0,
    )
    horizontal = _ramp(tile.width, max(0, left), max(0, right))
    vertical = _ramp(tile.height, max(0, top), max(0, bottom))
    return vertical[:, None] * horizontal[None, :]


def noise_field(seed: int, channels: int, width: int, height: int) -> torch.Tensor:
    """One seeded (1, channels, height/8, width/8) normal field for the whole latent canvas."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    shape = (1, channels, height // LATENT, width // LATENT)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def crop_noise(field: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The part of ``field`` under ``tile`` (tile origins are multiples of 8)."""
    x, y = tile.x // LATENT, tile.y // LATENT
    return field[:, :, y : y + tile.height // LATENT, x : x + tile.width // LATENT].clone()


def pad_to_multiple(image: np.ndarray, multiple: int = LATENT) -> np.ndarray:
    """Edge-replicated padding on the right and bottom up to multiples of ``multiple``."""
    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not pad_h and not pad_w:
        return image
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pads, mode="edge")


class BandBlender:
    """Accumulates feathered tiles in row-major order into a (H, W, C) uint8 picture.

    Float sums exist only for the rows the current tile row covers; rows no later tile can
    touch are normalised and written to ``result`` as soon as a new tile row starts.
    """

    def __init__(self, base: np.ndarray, tiles: list[Tile]) -> None:
        self.result = base.copy()  # rows not yet final show the source (previews)
        self.tiles = tiles
        self._top = 0  # first row of the band
        self._sum = np.zeros((0, base.shape[1], base.shape[2]), np.float32)
        self._weight = np.zeros((0, base.shape[1], 1), np.float32)

    def add(self, tile: Tile, image: np.ndarray) -> None:
        if image.shape[:2] != (tile.height, tile.width):
            raise InvalidRequest("tile image", image.shape, f"expected {tile.height}x{tile.width}")
        self._flush(tile.y)
        bottom = tile.y + tile.height
        if bottom > self._top + self._sum.shape[0]:  # grow the band down to the tile's bottom
            extra = bottom - self._top - self._sum.shape[0]
            width, channels = self._sum.shape[1], self._sum.shape[2]
            self._sum = np.concatenate([self._sum, np.zeros((extra, width, channels), np.float32)])
            self._weight = np.concatenate([self._weight, np.zeros((extra, width, 1), np.float32)])
        weights = feather(tile, self.tiles)[..., None]
        rows = slice(tile.y - self._top, bottom - self._top)
        columns = slice(tile.x, tile.x + tile.width)
        self._sum[rows, columns] += image.astype(np.float32) * weights
        self._weight[rows, columns] += weights
        # The band as blended so far, for previews.
        self.result[tile.y : bottom, columns] = self._normalised(rows, columns)

    def finish(self) -> np.ndarray:
        self._flush(self._top + self._sum.shape[0])
        return self.result

    def _normalised(self, rows: slice, columns: slice) -> np.ndarray:
        weight = self._weight[rows, columns]
        blended = self._sum[rows, columns] / np.maximum(weight, 1e-6)
        keep = self.result[rows.start + self._top : rows.stop + self._top, columns]
        out = np.where(weight > 1e-6, np.clip(blended + 0.5, 0, 255), keep)
        return out.astype(np.uint8)

    def _flush(self, until: int) -> None:
        """Rows above ``until`` are final: write them and drop their sums."""
        done = min(max(0, until - self._top), self._sum.shape[0])
        if done == 0:
            return
        rows, columns = slice(0, done), slice(0, self._sum.shape[1])
        self.result[self._top : self._top + done] = self._normalised(rows, columns)
        self._sum = self._sum[done:]
        self._weight = self._weight[done:]
        self._top += done
