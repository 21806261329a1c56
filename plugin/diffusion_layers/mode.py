"""Mode follows the canvas: what the docker says will run, and what is sent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CanvasFacts:
    """What the controller read from the document before choosing (the selection already
    clipped to the canvas: where it reaches past the edge does not count)."""

    has_selection: bool
    transparent_under_selection: bool = False
    canvas_empty: bool = False


@dataclass(frozen=True)
class ModeChoice:
    mode: str  # protocol mode: txt2img | img2img | inpaint | outpaint
    label: str  # what the docker shows
    uses_selection: bool
    sends_image: bool


def choose_mode(facts: CanvasFacts, strength: float) -> ModeChoice:
    """Pick the protocol mode.

    * a selection over transparent pixels → outpaint (fill)
    * a selection → inpaint at 100 % strength, refine (inpaint with strength < 1) below
    * no selection and an empty image → txt2img
    * no selection, pixels present → txt2img at 100 %, img2img (refine) below
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within 0..1, got {strength!r}")
    full = strength >= 1.0
    if facts.has_selection:
        if facts.transparent_under_selection:
            return ModeChoice(
                "outpaint", "Outpaint: extend the image into the selection", True, True
            )
        if full:
            return ModeChoice("inpaint", "Inpaint: fill the selection", True, True)
        return ModeChoice("inpaint", f"Refine the selection ({round(strength * 100)}%)", True, True)
    if facts.canvas_empty or full:
        return ModeChoice("txt2img", "Generate: new image for the whole canvas", False, False)
    return ModeChoice("img2img", f"Refine the whole image ({round(strength * 100)}%)", False, True)


def edit_choice(has_selection: bool) -> ModeChoice:
    """Mode "edit" (the docker's Edit toggle): the prompt is an instruction for the selection's
    region (with context; the result is placed like an inpaint result) or the whole canvas."""
    if has_selection:
        return ModeChoice("edit", "Edit the selection: the prompt is an instruction", True, True)
    return ModeChoice("edit", "Edit the whole image: the prompt is an instruction", False, True)
