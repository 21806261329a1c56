"""Rectangles on the region: selection bounds, the context box to crop, the denoise size.

Coordinates are pixels inside the region the plugin sent (x to the right, y down); a ``Box``
is half-open: it covers columns ``x .. right-1`` and rows ``y .. bottom-1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backend.engine.errors import InvalidRequest
from backend.engine.image_checks import check_mask, check_size

#: Auto context: this fraction of the selection size for tiny selections ...
CONTEXT_SMALL = 0.5
#: ... falling (log-linearly in the selection size) to this for large ones,
CONTEXT_LARGE = 0.15
#: between these selection sizes (the larger side, px),
CONTEXT_SMALL_SIZE = 64
CONTEXT_LARGE_SIZE = 1024
#: and never less than this many pixels on each side.
CONTEXT_MIN_PX = 32


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def area(self) -> int:
        return self.width * self.height

    def intersect(self, other: Box) -> Box | None:
        """The overlap of two boxes, or None when they do not overlap."""
        left, top = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        if right <= left or bottom <= top:
            return None
        return Box(left, top, right - left, bottom - top)

    def translate(self, dx: int, dy: int) -> Box:
        return Box(self.x + dx, self.y + dy, self.width, self.height)

    def clip(self, width: int, height: int) -> Box | None:
        """This box clipped to a (0, 0, width, height) image; None when nothing is left."""
        return self.intersect(Box(0, 0, width, height))


def selection_bounds(mask: np.ndarray, threshold: int = 0) -> Box | None:
    """The tight box around mask pixels > ``threshold``; None when nothing is selected."""
    check_mask("mask", mask)
    if not 0 <= threshold <= 254:
        raise InvalidRequest("threshold", threshold, "expected 0..254")
    selected = mask > threshold
    rows = np.flatnonzero(selected.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(selected.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    return Box(left, top, right - left, bottom - top)


def auto_context(size: int) -> float:
    """The auto context fraction for a selection whose larger side is ``size`` px."""
    if size <= CONTEXT_SMALL_SIZE:
        return CONTEXT_SMALL
    if size >= CONTEXT_LARGE_SIZE:
        return CONTEXT_LARGE
    t = math.log(size / CONTEXT_SMALL_SIZE) / math.log(CONTEXT_LARGE_SIZE / CONTEXT_SMALL_SIZE)
    return CONTEXT_SMALL + t * (CONTEXT_LARGE - CONTEXT_SMALL)


def context_box(
    bounds: Box,
    region_width: int,
    region_height: int,
    context: float | None = None,
    allow_outside: bool = False,
) -> Box:
    """``bounds`` grown by ``context`` x its size on every side, clipped to the region.

    ``context=None`` picks the margin from the selection size: ``auto_context(max side)`` of
    the larger side (0.5x for selections up to 64 px, 0.15x from 1024 px), at least 32 px.
    An explicit ``context`` grows each axis by ``context`` x that axis's size (0 = the bounds
    themselves). ``allow_outside`` skips the clip (the caller then crops with transparency).
    """
    # 1. Check inputs.
    region_width = check_size("region_width", region_width)
    region_height = check_size("region_height", region_height)
    if bounds.width <= 0 or bounds.height <= 0:
        raise InvalidRequest("bounds", bounds, "the selection bounds are empty")
    if context is not None and not (0.0 <= context <= 16.0 and math.isfinite(context)):
        raise InvalidRequest("inpaint.context", context, "expected 0..16 (x the selection size)")
    if not allow_outside and bounds.clip(region_width, region_height) is None:
        raise InvalidRequest("bounds", bounds, "the selection lies outside the region")
    # 2. Margins per axis.
    if context is None:
        side = max(bounds.width, bounds.height)
        pad = max(CONTEXT_MIN_PX, round(auto_context(side) * side))
        pad_x = pad_y = pad
    else:
        pad_x, pad_y = round(context * bounds.width), round(context * bounds.height)
    grown = Box(
        bounds.x - pad_x, bounds.y - pad_y, bounds.width + 2 * pad_x, bounds.height + 2 * pad_y
    )
    if allow_outside:
        return grown
    # 3. Clip to the region (checked above to overlap).
    clipped = grown.clip(region_width, region_height)
    assert clipped is not None
    return clipped


def native_size(width: int, height: int, native: int, multiple: int = 8) -> tuple[int, int]:
    """The size to denoise a ``width`` x ``height`` crop at: area about ``native``², the
    aspect ratio kept, each side a multiple of ``multiple`` and at least ``multiple``."""
    width = check_size("width", width)
    height = check_size("height", height)
    native = check_size("native", native)
    multiple = check_size("multiple", multiple)
    scale = native / math.sqrt(width * height)
    out_w = max(multiple, round(width * scale / multiple) * multiple)
    out_h = max(multiple, round(height * scale / multiple) * multiple)
    return int(out_w), int(out_h)
