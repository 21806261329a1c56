"""Where a result lands on the canvas, and what its layer is called."""

from __future__ import annotations

import re

from .geometry import Rect

MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 48
PREVIEW_PREFIX = "[Preview]"


def result_rect(region: Rect, x: int, y: int, width: int, height: int) -> Rect:
    """A result's ``x``/``y`` are offsets inside the request's region → canvas rectangle."""
    if width <= 0 or height <= 0:
        raise ValueError(f"result size must be positive, got {width}x{height}")
    return Rect(region.x + x, region.y + y, width, height)


def mask_window(region: Rect, placed: Rect) -> Rect:
    """The part of the region's mask that covers a placed result (region coordinates)."""
    return placed.translated(-region.x, -region.y)


def layer_name(prompt: str, seed: int) -> str:
    """'a red fox in snow… #1234': the first words of the prompt and the seed."""
    words = re.sub(r"\s+", " ", prompt.replace(",", " ")).strip().split(" ")
    text = " ".join(w for w in words[:MAX_NAME_WORDS] if w)
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1].rstrip() + "…"
    if not text:
        text = "Generated"
    return f"{text} #{seed}"


def preview_name(prompt: str, seed: int) -> str:
    return f"{PREVIEW_PREFIX} {layer_name(prompt, seed)}"
