"""Where a result lands on the canvas, and what its layer is called."""

from __future__ import annotations

import re
from typing import List, Optional

from .errors import CanvasChanged, ResultMismatch
from .geometry import Rect, mask_bounds

MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 48
PREVIEW_PREFIX = "[Preview]"


def result_rect(region: Rect, x: int, y: int, width: int, height: int) -> Rect:
    """A result's ``x``/``y`` are offsets inside the request's region → canvas rectangle."""
    if width <= 0 or height <= 0:
        raise ValueError(f"result size must be positive, got {width}x{height}")
    return Rect(region.x + x, region.y + y, width, height)


#: A result must cover every pixel selected at least this much (a server may leave out the
#: faintest edge of a soft selection, never its body).
COVERED_ABOVE = 127


def check_result(region: Rect, placed: Rect, mask: Optional[bytes], what: str = "result") -> None:
    """Refuse a result that does not cover what was asked, before anything is placed.

    Without a selection the result must be exactly the region. With one (``mask`` over the
    region) it must lie inside the region and cover every pixel selected more than half.
    """
    wanted = region
    if mask is not None:
        wanted = mask_bounds(mask, region, COVERED_ABOVE) or Rect(region.x, region.y, 0, 0)
    exact = mask is None and placed == region
    fits = mask is not None and region.contains_rect(placed)
    covers = wanted.is_empty() or placed.contains_rect(wanted)
    if exact or (fits and covers):
        return
    raise ResultMismatch(
        f"The server sent a {what} of {placed.width}x{placed.height} px at "
        f"({placed.x}, {placed.y}) for the {region.width}x{region.height} px area at "
        f"({region.x}, {region.y}) that was asked for, so nothing was placed. Make sure the "
        "server and the plugin are the same version, then generate again."
    )


WHILE_GENERATING = "while generating"
SINCE_GENERATED = "since this result was generated"


def check_canvas(planned: Optional[Rect], now: Rect, when: str = WHILE_GENERATING) -> None:
    """Refuse a result planned for another canvas, before anything is placed.

    ``planned`` is the document's bounds when the job was planned, ``now`` its bounds now. Any
    difference (Crop, Scale, Resize Canvas, a rotation of a non-square image …) means the
    result's coordinates no longer mean what they meant: nothing is placed. Krita does not say
    where a crop's origin went, so even a crop whose size happens to fit is refused."""
    if planned is not None and planned != now:
        raise CanvasChanged(
            f"The image was cropped or resized {when}; nothing was placed. Generate again."
        )


def mask_window(region: Rect, placed: Rect) -> Rect:
    """The part of the region's mask that covers a placed result (region coordinates)."""
    return placed.translated(-region.x, -region.y)


_LORA_TAG = re.compile(r"<(?:lora|lyco):[^>]*>", re.IGNORECASE)
_WEIGHT = re.compile(r":\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*\)")


def name_text(prompt: str) -> str:
    """The prompt as a name shows it (docs/protocol.md, *Prompt syntax*): without ``#``
    comments, ``<lora:…>`` tags and emphasis brackets/weights; escapes read as the character.
    ``{a|b}`` wildcards stay as typed (the server chooses, after the style's template)."""
    lines = [line[: _unescaped_hash(line)] for line in prompt.split("\n")]
    text = _WEIGHT.sub(")", _LORA_TAG.sub(" ", "\n".join(lines)))
    out: List[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if char not in "()[]":
            out.append(char)
        index += 1
    return "".join(out)


def _unescaped_hash(line: str) -> int:
    """Where the line's comment starts (its length when it has none)."""
    index = 0
    while index < len(line):
        if line[index] == "\\":
            index += 2
        elif line[index] == "#":
            return index
        else:
            index += 1
    return len(line)


def layer_name(prompt: str, seed: int) -> str:
    """'a red fox in snow… #1234': the first words of the prompt (``name_text``) and the seed."""
    words = re.sub(r"\s+", " ", name_text(prompt).replace(",", " ")).strip().split(" ")
    text = " ".join(w for w in words[:MAX_NAME_WORDS] if w)
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1].rstrip() + "…"
    if not text:
        text = "Generated"
    return f"{text} #{seed}"


def preview_name(prompt: str, seed: int) -> str:
    return f"{PREVIEW_PREFIX} {layer_name(prompt, seed)}"
