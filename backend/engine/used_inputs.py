"""What each mode uses: an input the mode would ignore is refused, never silently dropped.

An artist who sends a mask with img2img expects only the selection to change; running the
whole region and dropping the mask would be a silently wrong picture. So every input that a
mode would not read is a 422 naming the input and the mode that would use it:

============  =============================================================================
input         used by
============  =============================================================================
image         img2img, inpaint, outpaint, upscale, edit, layers (txt2img makes a new picture)
mask          inpaint, outpaint, upscale, edit, layers (img2img repaints the whole region)
inpaint.fill  img2img, inpaint, outpaint, edit, layers (fills transparent pixels of the image)
inpaint.*     context, grow, blur, feather, color_match: inpaint, outpaint and edit only
============  =============================================================================

Options left at their defaults are not "sent" (a client may always send the whole object).
The API also refuses image parts no control names (backend/api/image_parts.py).
"""

from __future__ import annotations

from dataclasses import fields

from backend.engine.errors import EngineError, InvalidRequest
from backend.engine.types import InpaintSettings

IMAGE_MODES = ("img2img", "inpaint", "outpaint", "upscale", "edit", "layers")
# upscale: the selection of refine in place; edit, layers: the optional selection
MASK_MODES = ("inpaint", "outpaint", "upscale", "edit", "layers")
FILL_MODES = ("img2img", "inpaint", "outpaint", "edit", "layers")
OPTION_MODES = ("inpaint", "outpaint", "edit")  # the inpaint options other than fill
_DEFAULTS = InpaintSettings()


class UnusedInput(InvalidRequest):
    """An input the request's mode would ignore (422 naming the input)."""

    def __init__(self, field: str, reason: str) -> None:
        EngineError.__init__(self, f"{field}: {reason}", field=field)
        self.value = None


def _image_reason(mode: str) -> str:
    return (
        f"mode {mode} makes a new picture and would ignore the image; use mode img2img to "
        "start from it (inpaint or outpaint with a mask to repaint part of it), or leave the "
        "image out"
    )


def _mask_reason(mode: str) -> str:
    return (
        f"mode {mode} repaints the whole region and would ignore the mask; use mode inpaint "
        "(or outpaint) to repaint only the selection, or leave the mask out"
    )


def unused_inputs(
    mode: str, has_image: bool, has_mask: bool, inpaint: InpaintSettings | None = None
) -> list[tuple[str, str]]:
    """(field, reason) for every input ``mode`` would ignore; empty when all are used."""
    unused: list[tuple[str, str]] = []
    if has_image and mode not in IMAGE_MODES:
        unused.append(("image", _image_reason(mode)))
    if has_mask and mode not in MASK_MODES:
        unused.append(("mask", _mask_reason(mode)))
    for option in fields(InpaintSettings) if inpaint is not None else ():
        value = getattr(inpaint, option.name)
        if value == getattr(_DEFAULTS, option.name):
            continue
        users = FILL_MODES if option.name == "fill" else OPTION_MODES
        if mode not in users:
            unused.append(
                (
                    f"inpaint.{option.name}",
                    f"{value!r} is used only by {' and '.join(users)}; mode {mode} would "
                    "ignore it (leave it out)",
                )
            )
    return unused


def check_used_inputs(
    mode: str, has_image: bool, has_mask: bool, inpaint: InpaintSettings | None = None
) -> None:
    """Raise UnusedInput for the first input ``mode`` would ignore."""
    unused = unused_inputs(mode, has_image, has_mask, inpaint)
    if unused:
        raise UnusedInput(*unused[0])
