"""Read what one job needs from a document: region, pixels, mask, mode and control layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Tuple

from .canvas import CanvasDocument
from .errors import ControlLayerMissing, ControlLayerUnusable, SelectionOutsideCanvas
from .geometry import Rect, canvas_region, mask_bounds, selection_region
from .mode import CanvasFacts, ModeChoice, choose_mode, edit_choice
from .pixels import is_fully_transparent, transparent_under_mask
from .request import ControlImage
from .settings import ControlLayer, PluginSettings


@dataclass
class Plan:
    """Everything read from the document for one job, before anything is sent."""

    choice: ModeChoice
    region: Rect
    image: Optional[bytes]
    mask: Optional[bytes]
    controls: List[ControlImage]


OUTSIDE = (
    "The selection does not cover any part of the canvas. Select something inside the image,"
    " or deselect (Select ▸ Deselect) to work on the whole canvas."
)


class SelectionSource(Protocol):
    def bounds(self) -> Rect: ...

    def selection_bounds(self) -> Optional[Rect]: ...

    def read_selection(self, rect: Rect) -> bytes: ...


def selection_on_canvas(doc: SelectionSource) -> Optional[Rect]:
    """The selection's bounds clipped to the canvas and tightened to the pixels selected
    there (a feather reaching past the edge does not count); None without a selection.
    Raises SelectionOutsideCanvas when no selected pixel lies on the canvas."""
    selection = doc.selection_bounds()
    if selection is None or selection.is_empty():
        return None
    inside = selection.intersected(doc.bounds())
    tight = None if inside.is_empty() else mask_bounds(doc.read_selection(inside), inside)
    if tight is None:
        raise SelectionOutsideCanvas(OUTSIDE)
    return tight


def live_region(doc: SelectionSource) -> Tuple[Rect, Optional[bytes]]:
    """The region a live frame covers and the selection mask over it (None: whole canvas):
    the selection's bounds without context, else the whole canvas."""
    canvas = doc.bounds()
    selection = selection_on_canvas(doc)  # clipped to the canvas
    if selection is None:
        return canvas_region(canvas), None
    region = selection_region(selection, canvas, context=0.0)
    return region, doc.read_selection(region)


def plan_job(
    doc: CanvasDocument,
    settings: PluginSettings,
    controls: Sequence[ControlLayer] = (),
    read_controls: bool = True,
) -> Plan:
    """1. selection (clipped to the canvas) → region, 2. read pixels and mask, 3. choose the
    mode (``settings.edit``: "edit", without controls), 4. controls. The region always lies
    inside the canvas."""
    settings.check()
    canvas = doc.bounds()
    selection = selection_on_canvas(doc)
    if selection is not None:
        region = selection_region(selection, canvas)
        image, mask = doc.read_pixels(region), doc.read_selection(region)
        facts = CanvasFacts(True, transparent_under_mask(image, mask))
    else:
        region = canvas_region(canvas)
        image, mask = doc.read_pixels(region), None
        facts = CanvasFacts(False, canvas_empty=is_fully_transparent(image))
    if settings.edit:  # references instead of controls: edit_request.py
        choice, read_controls = edit_choice(selection is not None), False
    else:
        choice = choose_mode(facts, settings.strength)
    images = [read_control(doc, c, region) for c in controls] if read_controls else []
    return Plan(choice, region, image if choice.sends_image else None, mask, images)


def read_control(doc: CanvasDocument, control: ControlLayer, region: Rect) -> ControlImage:
    """What the control's layer renders over the region; a sentence when it cannot serve."""
    return control_image(control, doc.read_layer(control.ref, region), region)


def control_image(control: ControlLayer, pixels: Optional[bytes], region: Rect) -> ControlImage:
    """The control's pixels over ``region`` (None: its layer is gone), checked as a job needs
    them (read whole by Generate, in strips by the upscale flow)."""
    if pixels is None:
        raise ControlLayerMissing(
            f"Control layer '{control.layer}' is not in this document any more (deleted?): "
            "undo the deletion or remove the control."
        )
    if len(pixels) != region.width * region.height * 4:
        raise ControlLayerUnusable(f"Control layer '{control.layer}' could not be read.")
    if is_fully_transparent(pixels):
        raise ControlLayerUnusable(
            f"Control layer '{control.layer}' is empty where the image is generated: "
            "draw on it there, or remove the control."
        )
    return ControlImage(control, pixels)
