"""Which part of the canvas travels: the selection's bounds plus context, clipped.

Only the region the job needs is read and sent, and it always lies inside the canvas: a
selection is first clipped to the canvas and tightened to its selected pixels there
(``mask_bounds``), so a feathered selection whose bounds Krita extends past the edge is
treated like any other selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

MIN_SIDE = 8
MAX_SIDE = 8192
ALIGN = 8
DEFAULT_CONTEXT = 0.25
MIN_CONTEXT_PX = 16


class GeometryError(ValueError):
    """A region that the backend cannot take (too small or too large)."""


@dataclass(frozen=True)
class Rect:
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

    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersected(self, other: Rect) -> Rect:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def united(self, other: Rect) -> Rect:
        if self.is_empty():
            return other
        if other.is_empty():
            return self
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1, y1 = max(self.right, other.right), max(self.bottom, other.bottom)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def adjusted(self, left: int, top: int, right: int, bottom: int) -> Rect:
        return Rect(
            self.x + left, self.y + top, self.width - left + right, self.height - top + bottom
        )

    def contains_rect(self, other: Rect) -> bool:
        return (
            other.x >= self.x
            and other.y >= self.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def translated(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


def context_margin(selection: Rect, context: Optional[float] = None) -> int:
    """Pixels of context around a selection: a fraction of its larger side, at least 16."""
    factor = DEFAULT_CONTEXT if context is None else context
    if factor < 0 or factor > 4:
        raise GeometryError(f"context must be within 0..4, got {factor!r}")
    return max(MIN_CONTEXT_PX, int(round(max(selection.width, selection.height) * factor)))


def _align_axis(start: int, size: int, lo: int, hi: int) -> Tuple[int, int]:
    """Grow [start, start+size) to a multiple of ALIGN inside [lo, hi) where there is room."""
    want = -(-size // ALIGN) * ALIGN
    extra = want - size
    grow_right = min(extra, hi - (start + size))
    size += grow_right
    extra -= grow_right
    grow_left = min(extra, start - lo)
    return start - grow_left, size + grow_left


def align(region: Rect, bound: Rect) -> Rect:
    """Grow a region to multiples of 8 px where ``bound`` leaves room (models prefer them)."""
    x, w = _align_axis(region.x, region.width, bound.x, bound.right)
    y, h = _align_axis(region.y, region.height, bound.y, bound.bottom)
    return Rect(x, y, w, h)


def check_region(region: Rect) -> Rect:
    """Refuse a region the server cannot take with a sentence the artist can act on (only a
    canvas narrower or lower than 8 px gives a region that small: ``align`` grows any other)."""
    if region.width < MIN_SIDE or region.height < MIN_SIDE:
        side, size = ("wide", region.width) if region.width < MIN_SIDE else ("high", region.height)
        raise GeometryError(
            f"This image is {size} px {side}; generation needs at least {MIN_SIDE} px. Enlarge "
            "the canvas (Image ▸ Resize Canvas)."
        )
    if region.width > MAX_SIDE or region.height > MAX_SIDE:
        raise GeometryError(
            f"The area to generate is {region.width}x{region.height} px; generation takes at "
            f"most {MAX_SIDE}x{MAX_SIDE} px. Select a smaller area, or scale the image down "
            "(Image ▸ Scale Image To New Size)."
        )
    return region


def selection_region(selection: Rect, canvas: Rect, context: Optional[float] = None) -> Rect:
    """The region sent for a selection (already clipped to the canvas): bounds plus context.

    1. Grow the selection bounds by the context margin on every side.
    2. Clip to the canvas.
    3. Align to multiples of 8 px inside the canvas, then check the size limits.
    """
    if selection.is_empty():
        raise GeometryError(f"selection is empty: {selection}")
    margin = context_margin(selection, context)
    grown = selection.adjusted(-margin, -margin, margin, margin)
    clipped = grown.intersected(canvas)
    if clipped.is_empty():
        raise GeometryError(f"selection {selection} lies outside the canvas {canvas}")
    return check_region(align(clipped, canvas))


def canvas_region(canvas: Rect) -> Rect:
    """The whole image (no selection)."""
    return check_region(canvas)


def mask_bounds(mask: bytes, rect: Rect, threshold: int = 0) -> Optional[Rect]:
    """The tight box (canvas coordinates) around the pixels of an 8-bit mask read over
    ``rect`` whose value is above ``threshold``; None when there is none."""
    if len(mask) != rect.width * rect.height:
        raise GeometryError(f"mask has {len(mask)} bytes, {rect} needs {rect.width * rect.height}")
    if threshold:
        mask = mask.translate(bytes(0 if v <= threshold else v for v in range(256)))
    width = rect.width
    top = bottom = -1
    left, right = width, -1
    for row in range(rect.height):
        line = mask[row * width : (row + 1) * width]
        if line.count(0) == width:
            continue
        top = row if top < 0 else top
        bottom = row
        left = min(left, width - len(line.lstrip(b"\x00")))
        right = max(right, len(line.rstrip(b"\x00")) - 1)
    if top < 0:
        return None
    return Rect(rect.x + left, rect.y + top, right - left + 1, bottom - top + 1)
