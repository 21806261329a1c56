"""Generation scenarios: inpaint (rectangle, feathered ellipse + undo), refine, txt2img,
ControlNet from a layer, batch + apply all, save and reopen."""

from __future__ import annotations

import os

from krita import Krita
from PyQt5.QtCore import QByteArray

from . import probes
from .context import Context, ellipse_mask, gradient, rect_mask, sleep
from .flow import APPLY_ALL, generate_and_apply, node_by_id, record_annotations


def _painted_document(ctx: Context, width: int, height: int, name: str):
    """Gradient background + an opaque 'Paint' layer (the active layer)."""
    doc = ctx.new_document(width, height, name, fill=gradient)
    paint = ctx.add_paint_layer(doc, "Paint", [width // 5, height // 5, width // 2, height // 3],
                                (200, 60, 30, 255))  # fmt: skip
    return doc, paint


def _inpaint(ctx: Context, rect: list[int], mask: bytes, shot: str):
    doc, paint = _painted_document(ctx, 512, 512, ctx.name)
    yield ctx.activate(doc, paint)
    selection = ctx.select(doc, mask, rect)
    ctx.data["selection"] = rect
    yield from generate_and_apply(ctx, doc, shot=shot)
    record_annotations(ctx, doc)
    ctx.data["outside"] = {
        node["id"]: probes.outside_selection(
            node_by_id(doc, node["id"]), selection, [0, 0, doc.width(), doc.height()]
        )  # fmt: skip
        for node in ctx.data["new"]
    }
    return doc


def inpaint_rect(ctx: Context):
    rect = [160, 120, 128, 96]
    yield from _inpaint(ctx, rect, rect_mask(rect[2], rect[3]), shot="preview")


def inpaint_ellipse_undo(ctx: Context):
    """Feathered elliptical selection; then one undo must remove exactly the applied layer."""
    rect = [200, 180, 180, 140]
    doc = yield from _inpaint(ctx, rect, ellipse_mask(rect[2], rect[3], feather=24), shot="")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["after_undo"] = probes.snapshot(doc)


def refine(ctx: Context):
    """Whole canvas, no selection (the launch sets strength 0.5)."""
    doc, paint = _painted_document(ctx, 384, 256, ctx.name)
    yield ctx.activate(doc, paint)
    ctx.data["has_selection"] = doc.selection() is not None
    yield from generate_and_apply(ctx, doc)


def txt2img(ctx: Context):
    """An empty 768x512 canvas."""
    doc = ctx.new_document(768, 512, ctx.name)
    yield sleep(0.2)
    yield from generate_and_apply(ctx, doc, shot="result")
    record_annotations(ctx, doc)


def control_scribble(ctx: Context):
    """A 'Sketch' layer that the controls setting marks as a scribble control."""
    doc = ctx.new_document(320, 256, ctx.name)
    sketch = doc.createNode("Sketch", "paintlayer")
    doc.rootNode().addChildNode(sketch, None)
    for x, y, w, h in ([40, 40, 240, 6], [40, 40, 6, 170], [150, 80, 6, 150], [40, 200, 240, 6]):
        sketch.setPixelData(QByteArray(bytes((0, 0, 0, 255)) * (w * h)), x, y, w, h)
    yield ctx.activate(doc, sketch)  # "Add active layer as control" (controls are per document)
    ctx.data["control_added"] = ctx.controller().add_active_layer_as_control("scribble")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    yield from generate_and_apply(ctx, doc)


def batch_apply_all(ctx: Context):
    """The launch sets batch=3: apply all makes a group of three layers."""
    doc, paint = _painted_document(ctx, 256, 256, ctx.name)
    yield ctx.activate(doc, paint)
    # One [Preview] layer shows the picked result; the docker lists all three.
    yield from generate_and_apply(ctx, doc, action=APPLY_ALL, shot="batch")
    record_annotations(ctx, doc)


def save_reopen(ctx: Context):
    """Apply, save as .kra, close, reopen: the layer and its parameters are still there."""
    doc, paint = _painted_document(ctx, 256, 256, ctx.name)
    yield ctx.activate(doc, paint)
    ctx.select(doc, rect_mask(96, 96), [64, 64, 96, 96])
    yield from generate_and_apply(ctx, doc)
    record_annotations(ctx, doc)
    path = os.path.join(ctx.artifacts_dir, "reopen.kra")
    doc.setBatchmode(True)
    ctx.data["saved"] = bool(doc.saveAs(path))
    doc.waitForDone()
    doc.setModified(False)
    doc.close()
    yield sleep(0.5)
    reopened = Krita.instance().openDocument(path)
    ctx.app.activeWindow().addView(reopened)
    yield sleep(0.5)
    ctx.data["reopened"] = probes.snapshot(reopened)
    ctx.data["reopened_annotations"] = {
        node["id"]: probes.annotation_for(reopened, node["id"]) for node in ctx.data["new"]
    }
    ctx.data["reopened_raw_annotations"] = probes.annotations(reopened)


SCENARIOS = {
    "inpaint_rect": inpaint_rect,
    "inpaint_ellipse_undo": inpaint_ellipse_undo,
    "refine": refine,
    "txt2img": txt2img,
    "control_scribble": control_scribble,
    "batch_apply_all": batch_apply_all,
    "save_reopen": save_reopen,
}
