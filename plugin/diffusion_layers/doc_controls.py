"""A document's control layers: kept with the document (annotation ``diffusion_layers_controls``,
saved in the .kra), found by the layer's uniqueId, and named in sentences an artist can act on.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Protocol

from .canvas import Canvas, CanvasDocument
from .errors import ControlLayerMissing, ControlLayerUnusable, NoDocument, PluginError
from .node_tree import KIND_WORDS, TEMPORARY_PREFIXES
from .protocol import MAX_CONTROLS
from .settings import ControlLayer, controls_json, parse_controls

ANNOTATION_TYPE = "diffusion_layers_controls"
ANNOTATION_DESCRIPTION = "Diffusion Layers control layers of this document"
DELETED = "layer deleted"


def load(doc: CanvasDocument) -> List[ControlLayer]:
    raw = doc.read_annotation(ANNOTATION_TYPE)
    return parse_controls(raw.decode("utf-8", "replace")) if raw else []


def save(doc: CanvasDocument, controls: List[ControlLayer]) -> None:
    doc.write_annotation(
        ANNOTATION_TYPE, ANNOTATION_DESCRIPTION, controls_json(controls).encode("utf-8")
    )


def active_as_control(
    doc: CanvasDocument, controls: List[ControlLayer], control_type: str
) -> ControlLayer:
    """The active layer as a new control; raises a sentence when it cannot be one."""
    layer_id, name, kind = doc.active_layer_id(), doc.active_layer_name(), doc.active_layer_kind()
    if not layer_id:
        raise ControlLayerMissing("Select the layer to use as a control first.")
    if kind.endswith("mask"):
        what = KIND_WORDS.get(kind, "a mask")
        raise ControlLayerUnusable(
            f"'{name}' is {what}, not a layer: select the layer itself to use it as a control."
        )
    if name.startswith(TEMPORARY_PREFIXES):
        raise ControlLayerUnusable(
            f"'{name}' is the plugin's own preview: apply it first, then use that layer."
        )
    if any(c.ref in (layer_id, name) for c in controls):
        raise ControlLayerUnusable(f"'{name}' is already a control layer.")
    if len(controls) >= MAX_CONTROLS:
        raise ControlLayerUnusable(f"At most {MAX_CONTROLS} control layers; remove one first.")
    return ControlLayer(name, control_type, layer_id=layer_id).check()


def refresh_names(doc: CanvasDocument, controls: List[ControlLayer]) -> List[Optional[str]]:
    """Each control's layer's current name (renames followed), None where it was deleted."""
    names = [doc.layer_name(c.ref) for c in controls]
    for index, name in enumerate(names):
        if name is not None:
            controls[index].layer = name
    return names


def labels(doc: CanvasDocument, controls: List[ControlLayer]) -> List[str]:
    """What the docker shows for each control: its layer's name, marked when it is gone."""
    names = refresh_names(doc, controls)
    return [name or f"{c.layer} — {DELETED}" for c, name in zip(controls, names)]  # noqa: B905


def missing_sentence(control: ControlLayer) -> str:
    return (
        f"Control layer '{control.layer}' is not in this document any more (deleted?): "
        "undo the deletion or remove the control."
    )


class DocumentControls:
    """The controls of every open document, kept in each document's session."""

    def __init__(
        self,
        canvas: Canvas,
        session_of: Callable[[CanvasDocument], "HasControls"],
        changed: Callable[[], None],
        failed: Callable[[PluginError], None],
    ) -> None:
        self.canvas, self.session_of, self.changed, self.failed = (
            canvas,
            session_of,
            changed,
            failed,
        )

    def of(self, doc_key: str) -> List[ControlLayer]:
        doc = self.canvas.document(doc_key)
        return [] if doc is None else list(self.session_of(doc).controls)

    def current(self) -> List[ControlLayer]:
        """The active document's controls (empty without a document)."""
        doc = self.canvas.active_document()
        return [] if doc is None else list(self.session_of(doc).controls)

    def labels(self) -> List[str]:
        """What the docker shows for each control (a deleted layer is marked)."""
        doc = self.canvas.active_document()
        return [] if doc is None else labels(doc, self.session_of(doc).controls)

    def set(self, controls: List[ControlLayer]) -> None:
        doc = self.canvas.active_document()
        if doc is None:
            return
        self.session_of(doc).controls = [c.check() for c in controls]
        save(doc, controls)
        self.changed()

    def add_active(self, control_type: str = "scribble") -> bool:
        """The active layer (found by its uniqueId from now on) as a control of its document."""
        doc = self.canvas.active_document()
        try:
            if doc is None:
                raise NoDocument("Open or create a document first.")
            controls = self.session_of(doc).controls
            control = active_as_control(doc, controls, control_type)
        except PluginError as exc:
            self.failed(exc)
            return False
        self.set(controls + [control])
        return True


class HasControls(Protocol):
    controls: List[ControlLayer]
