"""Read what one job needs from a document: region, pixels, mask, mode and control layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .canvas import CanvasDocument
from .errors import ControlLayerMissing
from .geometry import Rect, canvas_region, reaches_off_canvas, selection_region
from .mode import CanvasFacts, ModeChoice, choose_mode
from .pixels import is_fully_transparent, transparent_under_mask
from .request import ControlImage
from .settings import PluginSettings


@dataclass
class Plan:
    """Everything read from the document for one job, before anything is sent."""

    choice: ModeChoice
    region: Rect
    image: Optional[bytes]
    mask: Optional[bytes]
    controls: List[ControlImage]


def plan_job(doc: CanvasDocument, settings: PluginSettings, read_controls: bool = True) -> Plan:
    """1. selection → region, 2. read pixels and mask, 3. choose the mode, 4. controls."""
    settings.check()
    canvas = doc.bounds()
    selection = doc.selection_bounds()
    if selection is not None and selection.is_empty():
        selection = None
    if selection is not None:
        off = reaches_off_canvas(selection, canvas)
        region = selection_region(selection, canvas, outpaint=off)
        image, mask = doc.read_pixels(region), doc.read_selection(region)
        facts = CanvasFacts(True, off, transparent_under_mask(image, mask))
    else:
        region = canvas_region(canvas)
        image, mask = doc.read_pixels(region), None
        facts = CanvasFacts(False, canvas_empty=is_fully_transparent(image))
    choice = choose_mode(facts, settings.strength)
    controls: List[ControlImage] = []
    for control in settings.controls if read_controls else []:
        pixels = doc.read_layer(control.layer, region)
        if pixels is None:
            raise ControlLayerMissing(f"Control layer {control.layer!r} is not in this document.")
        controls.append(ControlImage(control, pixels))
    return Plan(choice, region, image if choice.sends_image else None, mask, controls)
