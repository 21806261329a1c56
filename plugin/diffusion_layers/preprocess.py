"""'Preprocess to a new layer': a layer's control map (POST /v1/preprocess) as a new layer."""

from __future__ import annotations

import logging
from typing import Callable

from .canvas import Canvas, NewLayer
from .client import Client
from .errors import ControlLayerMissing, InvalidSetting, NoDocument, PluginError
from .geometry import Rect, canvas_region, selection_region
from .pixels import decode_image, qimage_to_bgra
from .placement import check_canvas, check_result
from .planning import selection_on_canvas
from .protocol import CONTROL_TYPES, REFERENCE_TYPES
from .request import build_preprocess

log = logging.getLogger(__name__)


def preprocess_to_layer(
    canvas: Canvas,
    client: Client,
    control_type: str,
    layer: str,
    on_done: Callable[[str], None],
    on_error: Callable[[PluginError], None],
) -> None:
    """1. check, 2. read the layer over the region, 3. ask the server, 4. add the map as a layer."""
    if control_type not in CONTROL_TYPES:
        raise InvalidSetting(f"control type {control_type!r} is not one of {CONTROL_TYPES}")
    if control_type in REFERENCE_TYPES:
        raise InvalidSetting(
            f"A '{control_type}' reference uses the layer's picture as it is: there is no map "
            "to preprocess."
        )
    doc = canvas.active_document()
    if doc is None:
        raise NoDocument("Open or create a document first.")
    doc.check_supported()
    selection = selection_on_canvas(doc)  # clipped to the canvas
    bounds = doc.bounds()
    region = selection_region(selection, bounds) if selection else canvas_region(bounds)
    pixels = doc.read_layer(layer, region)  # layer: its uniqueId (or name)
    if pixels is None:
        raise ControlLayerMissing(f"Layer {layer!r} is not in this document.")
    layer = doc.layer_name(layer) or layer
    key = doc.key

    def arrived(data: bytes) -> None:
        target = canvas.document(key)
        if target is None:
            log.info("document closed before its control map arrived; dropped")
            return
        try:
            check_canvas(bounds, target.bounds())  # cropped, scaled … meanwhile: refused
            image = decode_image(data)
            placed = Rect(region.x, region.y, image.width(), image.height())
            check_result(region, placed, None, "control map")
            layer_id = target.add_layer(
                NewLayer(f"[Control] {control_type}: {layer}", qimage_to_bgra(image), region)
            )
        except ValueError as exc:
            on_error(PluginError(f"The control map could not be read: {exc}"))
            return
        except PluginError as exc:  # wrong size: refused, nothing placed
            on_error(exc)
            return
        on_done(layer_id)

    client.preprocess(build_preprocess(control_type, region, pixels), arrived, on_error)
