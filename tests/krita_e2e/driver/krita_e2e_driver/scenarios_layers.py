"""Layers, documents, state and crashes (issue 12, kinds 4-8) in real Krita.

* ``layer_sources``: every layer type as a control source (what it renders), hidden / empty /
  mask sources refused with a sentence, and one generation with a group as the control.
* ``result_targets``: Generate with a filter mask, a transparency mask, a layer in a locked
  group, a layer in a collapsed group and a vector layer active: where preview and result go.
* ``preview_undo``: the preview never becomes the artist's (active layer kept) and no undo /
  redo / layer operation leaves a preview behind or bakes one in.
* ``per_document``: controls, results and previews belong to their document.
* ``close_during_live`` / ``close_during_job``: closing, switching and opening documents while
  live mode renders or a job runs (last in a launch: a crash ends the launch).
"""

from __future__ import annotations

import os
import zipfile

from krita import InfoObject, Krita, Selection
from PyQt5.QtCore import QByteArray
from PyQt5.QtGui import QColor, QImage

from . import probes
from .context import PREVIEW_PREFIX, Context, ScenarioFailed, Wait, gradient, sleep
from .flow import APPLY, GENERATE

LIVE_PREFIX = "[Live]"
TOGGLE_LIVE = "diffusion_layers_toggle_live"
SIZE = 128
RED = (0, 0, 255, 255)  # BGRA


# -- helpers ---------------------------------------------------------------------------------


def paint(node, rect: list[int], bgra: tuple = RED) -> None:
    x, y, w, h = rect
    node.setPixelData(QByteArray(bytes(bgra) * (w * h)), x, y, w, h)


def full_selection(doc) -> Selection:
    selection = Selection()
    selection.setPixelData(QByteArray(b"\xff" * (doc.width() * doc.height())), 0, 0,
                           doc.width(), doc.height())  # fmt: skip
    return selection


def settle(doc) -> None:
    doc.refreshProjection()
    doc.waitForDone()


def alpha_count(data: bytes) -> int:
    alpha = bytes(data)[3::4]
    return len(alpha) - alpha.count(0)


def where(doc, node) -> dict:
    """Parent name and index among the parent's layers (masks not counted)."""
    parent = node.parentNode()
    top = parent is None or probes.node_id(parent) == probes.node_id(doc.rootNode())
    return {
        "name": node.name(),
        "parent": None if top else parent.name(),
        "index": probes.index_in_parent(node, parent),
        "locked": bool(node.locked()),
    }


def temporaries(doc) -> list[str]:
    """Preview/live layers and copies of them ("Copy of [Preview] …") anywhere in the tree."""
    return [n.name() for n, _, _ in probes.walk(doc.rootNode())
            if PREVIEW_PREFIX in n.name() or LIVE_PREFIX in n.name()]  # fmt: skip


def active_name(doc) -> str | None:
    node = doc.activeNode()
    return None if node is None else node.name()


def generate(ctx: Context, doc):
    ctx.trigger(GENERATE)
    yield ctx.wait_state(("generating", "error", "preview"), 20)
    yield Wait("job ended", lambda: ctx.state() != "generating", 120)


def new_doc(ctx: Context, name: str):
    doc = ctx.new_document(SIZE, SIZE, name, fill=gradient)
    return doc


def try_make(ctx: Context, kind: str, make):
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - recorded: which layer types this Krita makes
        ctx.data.setdefault("make_errors", {})[kind] = f"{type(exc).__name__}: {exc}"
        return None


# -- kind 4: any layer is a control source, as it looks -------------------------------------


def _layer_zoo(ctx: Context, doc) -> dict:
    """One layer of every type Krita has, each rendering something at (16, 16, 32, 32)."""
    app, root = Krita.instance(), doc.rootNode()
    zoo = {}
    paint_layer = doc.createNode("paint", "paintlayer")
    root.addChildNode(paint_layer, None)
    paint(paint_layer, [16, 16, 32, 32])
    zoo["paintlayer"] = paint_layer
    group = doc.createGroupLayer("grp")
    root.addChildNode(group, None)
    child = doc.createNode("child", "paintlayer")
    group.addChildNode(child, None)
    paint(child, [20, 20, 30, 30], (255, 0, 0, 255))
    zoo["grouplayer"] = group

    def vector():
        node = doc.createVectorLayer("vec")
        root.addChildNode(node, None)
        node.addShapesFromSvg(
            '<svg xmlns="http://www.w3.org/2000/svg" width="128pt" height="128pt" '
            'viewBox="0 0 128 128"><rect x="16" y="16" width="40" height="40" '
            'fill="#00ff00"/></svg>'
        )
        return node

    zoo["vectorlayer"] = try_make(ctx, "vectorlayer", vector)

    def clone():
        node = doc.createCloneLayer("clone", paint_layer)
        root.addChildNode(node, None)
        return node

    zoo["clonelayer"] = try_make(ctx, "clonelayer", clone)

    def fill():
        info = InfoObject()
        info.setProperty("color", QColor(0, 0, 255))
        node = doc.createFillLayer("fill", "color", info, full_selection(doc))
        root.addChildNode(node, None)
        return node

    zoo["filllayer"] = try_make(ctx, "filllayer", fill)

    def file_layer():
        path = os.path.join(ctx.artifacts_dir, "file-layer.png")
        image = QImage(SIZE, SIZE, QImage.Format_ARGB32)
        image.fill(0)
        for y in range(16, 48):
            for x in range(16, 48):
                image.setPixel(x, y, 0xFF804020)
        image.save(path, "PNG")
        node = doc.createFileLayer("file", path, "None")
        root.addChildNode(node, None)
        return node

    zoo["filelayer"] = try_make(ctx, "filelayer", file_layer)

    def filter_layer():
        node = doc.createFilterLayer("filt", app.filter("invert"), full_selection(doc))
        root.addChildNode(node, None)
        return node

    zoo["filterlayer"] = try_make(ctx, "filterlayer", filter_layer)
    settle(doc)
    return zoo


def _read_as_control(ctx: Context, doc, node) -> dict:
    """What the plugin reads for this layer as a control over the whole canvas."""
    from diffusion_layers.geometry import Rect
    from diffusion_layers.krita_adapter import KritaDocument

    full = [0, 0, doc.width(), doc.height()]
    try:
        got = KritaDocument(doc).read_layer(node.uniqueId().toString(), Rect(*full))
    except Exception as exc:  # noqa: BLE001 - the sentence is what the test checks
        return {"error": str(exc), "kind": type(exc).__name__}
    projection = bytes(node.projectionPixelData(*full))
    return {
        "bytes": None if got is None else len(got),
        "opaque_pixels": None if got is None else alpha_count(got),
        "krita_projection_opaque": alpha_count(projection),
        "own_pixel_bytes": len(bytes(node.pixelData(*full))),
    }


def layer_sources(ctx: Context):
    data = ctx.data
    doc = new_doc(ctx, ctx.name)
    yield sleep(0.3)
    zoo = _layer_zoo(ctx, doc)
    yield sleep(1.0)
    settle(doc)
    data["made"] = sorted(k for k, v in zoo.items() if v is not None)
    data["reads"] = {kind: _read_as_control(ctx, doc, node)
                     for kind, node in zoo.items() if node is not None}  # fmt: skip
    # Sources that cannot render: hidden, inside a hidden group, empty (each added as a
    # control while visible, then hidden, as an artist would).
    hidden = ctx.add_paint_layer(doc, "hidden", [8, 8, 20, 20], RED)
    inner_group = doc.createGroupLayer("hidden grp")
    doc.rootNode().addChildNode(inner_group, None)
    inner = doc.createNode("inner", "paintlayer")
    inner_group.addChildNode(inner, None)
    paint(inner, [8, 8, 20, 20])
    empty = doc.createNode("empty", "paintlayer")
    doc.rootNode().addChildNode(empty, None)
    settle(doc)
    yield sleep(0.5)  # Krita activates the layer added last on a later turn
    ctl = ctx.controller()
    refused = {}
    for label, node, hide in (("hidden", hidden, hidden), ("in_hidden_group", inner, inner_group),
                              ("empty", empty, None)):  # fmt: skip
        yield ctx.activate(doc, node)
        ctl.controls.set([])
        added = ctl.add_active_layer_as_control("scribble")
        if hide is not None:
            hide.setVisible(False)
            settle(doc)
        yield from generate(ctx, doc)
        refused[label] = {"added": added, "state": ctx.state(), "error": ctx.last_error(),
                          "previews": temporaries(doc)}  # fmt: skip
    # A mask is not offered: adding the active filter mask is refused with a sentence.
    mask = try_make(ctx, "filtermask", lambda: _filter_mask(doc, zoo["paintlayer"]))
    if mask is not None:
        settle(doc)
        yield ctx.activate(doc, mask)
        ctl.controls.set([])
        refused["mask"] = {"added": ctl.add_active_layer_as_control("scribble"),
                           "error": ctx.last_error(), "controls": len(ctl.controls.current())}  # fmt: skip
    data["refused"] = refused
    # End to end: a group and a vector layer as the control, Generate reaches a preview.
    generated = {}
    for kind in ("grouplayer", "vectorlayer"):
        node = zoo.get(kind)
        if node is None:
            continue
        ctl.controls.set([])
        ctl.discard()
        yield ctx.activate(doc, node)
        added = ctl.add_active_layer_as_control("scribble")
        yield ctx.activate(doc, zoo["paintlayer"])
        yield from generate(ctx, doc)
        session = ctl.session()
        sent = [] if session is None or session.params is None else session.params.controls
        generated[kind] = {"added": added, "state": ctx.state(), "error": ctx.last_error(),
                           "controls_sent": len(sent)}  # fmt: skip
        ctl.discard()
        yield sleep(0.2)
    data["generated"] = generated
    data["docker_texts"] = ctx.docker_texts()


def _filter_mask(doc, layer):
    mask = doc.createFilterMask("Blur", Krita.instance().filter("blur"), full_selection(doc))
    layer.addChildNode(mask, None)
    return mask


# -- kind 5: results always land somewhere valid --------------------------------------------


def _target_case(ctx: Context, label: str, build):
    """A fresh document; ``build(doc)`` returns (node to activate, layer the result belongs
    above); Generate → where the preview is → Apply → where the layer is."""
    doc = new_doc(ctx, f"{ctx.name}-{label}")
    yield sleep(0.2)
    target, layer = build(doc)
    settle(doc)
    yield ctx.activate(doc, target)
    active_id = probes.node_id(doc.activeNode())
    before = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    yield from generate(ctx, doc)
    yield sleep(0.4)  # Krita may activate a new layer on a later event-loop turn
    case = {"state": ctx.state(), "error": ctx.last_error(),
            "active_kept": doc.activeNode() is not None and
            probes.node_id(doc.activeNode()) == active_id,
            "layer": where(doc, layer)}  # fmt: skip
    previews = probes.find_nodes(doc, PREVIEW_PREFIX)
    case["previews"] = [where(doc, n) for n in previews]
    ctx.trigger(APPLY)
    yield sleep(0.4)
    settle(doc)
    new = [n for n, _, _ in probes.walk(doc.rootNode()) if probes.node_id(n) not in before]
    case["new"] = [dict(where(doc, n), type=n.type(),
                        opaque=alpha_count(bytes(n.pixelData(0, 0, SIZE, SIZE))))
                   for n in new]  # fmt: skip
    case["layer_after"] = where(doc, layer)
    case["after_error"] = ctx.last_error()
    case["temporaries"] = temporaries(doc)
    ctx.data.setdefault("cases", {})[label] = case
    doc.setModified(False)


def result_targets(ctx: Context):
    def filter_mask(doc):
        layer = ctx.add_paint_layer(doc, "paint", [10, 10, 50, 50], RED)
        return _filter_mask(doc, layer), layer

    def transparency_mask(doc):
        layer = ctx.add_paint_layer(doc, "paint", [10, 10, 50, 50], RED)
        mask = doc.createNode("tmask", "transparencymask")
        layer.addChildNode(mask, None)
        return mask, layer

    def in_locked_group(doc):
        group = doc.createGroupLayer("locked grp")
        doc.rootNode().addChildNode(group, None)
        inner = doc.createNode("inner", "paintlayer")
        group.addChildNode(inner, None)
        paint(inner, [10, 10, 50, 50])
        group.setLocked(True)
        return inner, group

    def in_collapsed_group(doc):
        group = doc.createGroupLayer("collapsed grp")
        doc.rootNode().addChildNode(group, None)
        inner = doc.createNode("inner", "paintlayer")
        group.addChildNode(inner, None)
        paint(inner, [10, 10, 50, 50])
        group.setCollapsed(True)
        return inner, inner

    def vector(doc):
        node = doc.createVectorLayer("vec")
        doc.rootNode().addChildNode(node, None)
        return node, node

    for label, build in (("filter_mask", filter_mask), ("transparency_mask", transparency_mask),
                         ("locked_group", in_locked_group),
                         ("collapsed_group", in_collapsed_group), ("vector", vector)):  # fmt: skip
        yield from _target_case(ctx, label, build)


# -- kind 6: the preview never becomes the artist's -----------------------------------------


def _sketch_doc(ctx: Context, name: str):
    doc = new_doc(ctx, name)
    sketch = ctx.add_paint_layer(doc, "sketch", [30, 30, 40, 40], RED)
    return doc, sketch


def _step(ctx: Context, doc, label: str, extra: dict | None = None) -> None:
    entry = {"label": label, "state": ctx.state(), "error": ctx.last_error(),
             "temporaries": temporaries(doc),
             "layers": [n.name() for n, _, _ in probes.walk(doc.rootNode())
                        if not n.type().endswith("mask")]}  # fmt: skip
    entry.update(extra or {})
    ctx.data.setdefault("steps", []).append(entry)


def _undo(ctx: Context, doc, label: str, action: str = "edit_undo"):
    ctx.trigger(action)
    yield sleep(0.5)
    settle(doc)
    _step(ctx, doc, label)


def preview_undo(ctx: Context):
    data = ctx.data
    # 1. The active layer stays the artist's; Apply, then undo twice, redo twice.
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-a")
    yield ctx.activate(doc, sketch)
    sketch_sha = probes.pixel_stats(probes.node_pixels(sketch, [0, 0, SIZE, SIZE]), SIZE, SIZE)
    yield from generate(ctx, doc)
    data["active_at_preview"] = active_name(doc)
    yield sleep(0.6)
    data["active_later"] = active_name(doc)
    _step(ctx, doc, "a: preview shown")
    ctx.trigger(APPLY)
    yield sleep(0.4)
    _step(ctx, doc, "a: applied")
    for label in ("a: undo 1", "a: undo 2"):
        yield from _undo(ctx, doc, label)
    for label in ("a: redo 1", "a: redo 2"):
        yield from _undo(ctx, doc, label, "edit_redo")
    after = probes.pixel_stats(probes.node_pixels(sketch, [0, 0, SIZE, SIZE]), SIZE, SIZE)
    data["sketch_unchanged"] = after["sha1"] == sketch_sha["sha1"]
    # 2. Undo takes the preview away: Apply says it is gone; redo brings it back: Apply works.
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-b")
    yield ctx.activate(doc, sketch)
    yield from generate(ctx, doc)
    _step(ctx, doc, "b: preview shown")
    yield from _undo(ctx, doc, "b: undo (preview gone)")
    ctx.trigger(APPLY)
    yield sleep(0.3)
    _step(ctx, doc, "b: apply without preview")
    yield from _undo(ctx, doc, "b: redo (preview back)", "edit_redo")
    ctx.trigger(APPLY)
    yield sleep(0.3)
    _step(ctx, doc, "b: apply after redo")
    # 3. Layer operations on the preview: duplicate, rename, move into a group, delete.
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-c")
    yield ctx.activate(doc, sketch)
    yield from generate(ctx, doc)
    preview = probes.find_nodes(doc, PREVIEW_PREFIX)[0]
    yield ctx.activate(doc, preview)
    ctx.trigger("duplicatelayer")
    yield sleep(0.5)
    _step(ctx, doc, "c: preview duplicated")
    previews = [n for n in probes.find_nodes(doc, PREVIEW_PREFIX) if "copy" not in n.name()]
    preview = (previews or probes.find_nodes(doc, PREVIEW_PREFIX))[0]
    preview.setName("renamed by the artist")
    group = doc.createGroupLayer("holder")
    doc.rootNode().addChildNode(group, None)
    preview.remove()  # moved into the group, as dragging it there does
    group.addChildNode(preview, None)
    yield sleep(0.3)
    _step(ctx, doc, "c: renamed, moved into a group")
    ctx.trigger(APPLY)
    yield sleep(0.5)
    _step(
        ctx,
        doc,
        "c: applied after duplicate, rename, move",
        {"applied_parent": where(doc, preview)["parent"]},
    )
    yield ctx.activate(doc, sketch)
    yield from generate(ctx, doc)
    preview = probes.find_nodes(doc, PREVIEW_PREFIX)[0]
    preview.remove()
    yield sleep(0.3)
    ctx.trigger(APPLY)
    yield sleep(0.3)
    _step(ctx, doc, "c: apply after the preview was deleted")
    # 4. Discard, then undo: the preview is back as the plugin's (Apply works), redo: gone.
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-d")
    yield ctx.activate(doc, sketch)
    yield from generate(ctx, doc)
    ctx.controller().discard()
    yield sleep(0.3)
    _step(ctx, doc, "d: discarded")
    yield from _undo(ctx, doc, "d: undo discard")
    yield from _undo(ctx, doc, "d: redo discard", "edit_redo")
    yield from _undo(ctx, doc, "d: undo discard again")
    ctx.trigger(APPLY)
    yield sleep(0.4)
    _step(ctx, doc, "d: apply the restored preview")
    yield from _undo(ctx, doc, "d: undo apply")
    yield from _undo(ctx, doc, "d: undo more")
    # 5. Merge the preview down into the sketch: Krita must not bake it in (it is locked).
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-m")
    yield ctx.activate(doc, sketch)
    full = [0, 0, SIZE, SIZE]
    before = probes.pixel_stats(probes.node_pixels(sketch, full), SIZE, SIZE)["sha1"]
    yield from generate(ctx, doc)
    yield ctx.activate(doc, probes.find_nodes(doc, PREVIEW_PREFIX)[0])
    ctx.trigger("merge_layer")
    yield sleep(0.8)
    settle(doc)
    sketches = [n for n, _, _ in probes.walk(doc.rootNode()) if n.name() == "sketch"]
    after = [probes.pixel_stats(probes.node_pixels(n, full), SIZE, SIZE)["sha1"]
             for n in sketches]  # fmt: skip
    _step(ctx, doc, "m: merge down attempted", {"sketch_unchanged": after == [before]})
    # 6. Flatten the image while a preview is shown (recorded: what Krita does with it).
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-f")
    yield ctx.activate(doc, sketch)
    canvas = probes.pixel_stats(probes.node_pixels(doc, full), SIZE, SIZE)["sha1"]
    yield from generate(ctx, doc)
    ctx.trigger("flatten_image")
    yield sleep(0.8)
    settle(doc)
    flat = probes.pixel_stats(probes.node_pixels(doc, full), SIZE, SIZE)["sha1"]
    _step(ctx, doc, "f: flattened with a preview shown", {"artwork_unchanged": flat == canvas})
    # 7. Save with a preview shown, reopen: the reopened document has no preview.
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-e")
    yield ctx.activate(doc, sketch)
    yield from generate(ctx, doc)
    path = os.path.join(ctx.artifacts_dir, "with-preview.kra")
    doc.setBatchmode(True)
    data["saved"] = bool(doc.saveAs(path))
    doc.waitForDone()
    doc.setModified(False)
    doc.close()
    with zipfile.ZipFile(path) as kra:
        data["saved_with_preview"] = PREVIEW_PREFIX in kra.read("maindoc.xml").decode("utf-8")
    yield sleep(0.5)
    reopened = Krita.instance().openDocument(path)
    ctx.app.activeWindow().addView(reopened)
    yield sleep(1.5)
    _step(ctx, reopened, "e: reopened")


# -- kind 7: everything per document is per document ----------------------------------------


def _show(ctx: Context, doc) -> Wait:
    """Make ``doc`` the active document (its view shown)."""
    window = ctx.app.activeWindow()
    for view in window.views():
        if view.document() is not None and probes.node_id(view.document().rootNode()) == \
                probes.node_id(doc.rootNode()):  # fmt: skip
            window.showView(view)
            view.setVisible()
    ctx.app.setActiveDocument(doc)
    key = probes.node_id(doc.rootNode())
    return Wait("document active", lambda: ctx.app.activeDocument() is not None and
                probes.node_id(ctx.app.activeDocument().rootNode()) == key, 10)  # fmt: skip


def per_document(ctx: Context):
    data = ctx.data
    ctl = ctx.controller()
    a = new_doc(ctx, f"{ctx.name}-A")
    sketch_a = ctx.add_paint_layer(a, "Sketch", [10, 10, 60, 60], RED)
    yield ctx.activate(a, sketch_a)
    data["added_in_a"] = ctl.add_active_layer_as_control("scribble")
    data["controls_a"] = [c.layer for c in ctl.controls.current()]
    b = new_doc(ctx, f"{ctx.name}-B")
    ctx.add_paint_layer(b, "Sketch", [60, 60, 40, 40], (0, 255, 0, 255))
    yield _show(ctx, b)
    yield sleep(0.3)
    data["controls_b"] = [c.layer for c in ctl.controls.current()]
    yield from generate(ctx, b)
    session = ctl.session()
    data["b_controls_sent"] = None if session is None or session.params is None else \
        len(session.params.controls)  # fmt: skip
    data["b_state"] = ctx.state()
    data["b_previews"] = temporaries(b)
    yield _show(ctx, a)
    yield sleep(0.3)
    data["a_state_while_b_previews"] = ctx.state()
    data["a_results"] = ctx.results_count()
    ctx.trigger(APPLY)  # nothing to apply in A
    yield sleep(0.3)
    data["a_after_apply"] = [n.name() for n, _, _ in probes.walk(a.rootNode())]
    data["b_after_apply_in_a"] = temporaries(b)
    yield from generate(ctx, a)
    session = ctl.session()
    data["a_controls_sent"] = None if session is None or session.params is None else \
        len(session.params.controls)  # fmt: skip
    ctl.discard()
    # The control's layer renamed: followed; deleted: marked, Generate refused with a sentence.
    sketch_a.setName("Sketch renamed")
    yield sleep(0.2)
    data["labels_renamed"] = ctl.controls.labels()
    sketch_a.remove()
    yield sleep(1.8)  # the docker's refresh tick
    data["labels_deleted"] = ctl.controls.labels()
    data["docker_texts_deleted"] = ctx.docker_texts()
    yield from generate(ctx, a)
    data["deleted_state"] = ctx.state()
    data["deleted_error"] = ctx.last_error()
    yield _show(ctx, b)
    yield sleep(0.3)
    data["b_state_end"] = ctx.state()
    data["b_error_end"] = ctx.last_error()


# -- kind 8: no document or view event crashes Krita ----------------------------------------


def _live_frames(ctx: Context) -> int:
    live = getattr(ctx.controller(), "live", None)
    return int(getattr(live, "frames_shown", 0) or 0)


def close_during_live(ctx: Context):
    data = ctx.data
    ctl = ctx.controller()
    for label in ("close", "switch_then_close"):
        doc, sketch = _sketch_doc(ctx, f"{ctx.name}-{label}")
        yield ctx.activate(doc, sketch)
        ctx.trigger(TOGGLE_LIVE)
        shown = _live_frames(ctx)
        yield Wait("a live frame", lambda s=shown: _live_frames(ctx) > s, 120)
        paint(sketch, [40, 80, 30, 8], (20, 20, 20, 255))
        settle(doc)
        shown = _live_frames(ctx)
        yield Wait("a frame after the stroke", lambda s=shown: _live_frames(ctx) > s, 120)
        entry = {"live_layers": temporaries(doc)}
        if label == "switch_then_close":
            ctx.log("open another document while live runs")
            other = new_doc(ctx, f"{ctx.name}-other")
            yield sleep(0.8)
            entry["live_running_after_switch"] = ctl.live.running
            entry["live_layers_after_switch"] = temporaries(doc)
            ctx.log("switch back")
            yield _show(ctx, doc)
            ctx.log("close the other document")
            other.setModified(False)
            other.close()
            yield sleep(0.5)
        ctx.log(f"close the live document ({label})")
        doc.setModified(False)
        doc.close()
        ctx.log("closed")
        yield sleep(2.0)
        entry["live_running"] = ctl.live.running
        entry["state"] = ctx.state()
        entry["error"] = ctx.last_error()
        data[label] = entry
    # A view closed and a new document opened while live runs on a third.
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-open")
    yield ctx.activate(doc, sketch)
    ctx.trigger(TOGGLE_LIVE)
    shown = _live_frames(ctx)
    yield Wait("a live frame", lambda: _live_frames(ctx) > shown, 120)
    opened = new_doc(ctx, f"{ctx.name}-opened")
    yield sleep(1.0)
    data["open_while_live"] = {"live_running": ctl.live.running, "opened_temporaries":
                               temporaries(opened), "doc_temporaries": temporaries(doc)}  # fmt: skip
    opened.setModified(False)
    opened.close()
    yield _show(ctx, doc)
    # A second window (Window ▸ New Window) opened and closed while live runs.
    windows = len(ctx.app.windows())
    ctx.log("new window while live runs")
    ctx.trigger("view_newwindow")
    yield sleep(1.5)
    data["new_window"] = {"windows": len(ctx.app.windows()) - windows,
                          "live_running": ctl.live.running}  # fmt: skip
    if len(ctx.app.windows()) > windows:
        ctx.log("close the new window")
        ctx.app.windows()[-1].qwindow().close()
        yield sleep(1.5)
        data["new_window"]["after_close"] = len(ctx.app.windows()) - windows
        data["new_window"]["live_running_after_close"] = ctl.live.running
    yield _show(ctx, doc)
    ctx.trigger(TOGGLE_LIVE)
    yield sleep(0.5)
    data["live_off_temporaries"] = temporaries(doc)


def close_during_job(ctx: Context):
    data = ctx.data
    doc, sketch = _sketch_doc(ctx, f"{ctx.name}-job")
    yield ctx.activate(doc, sketch)
    ctx.trigger(GENERATE)
    yield ctx.wait_state(("generating",), 20)
    doc.setModified(False)
    doc.close()
    yield sleep(4.0)  # the job ends on the server meanwhile
    data["state"] = ctx.state()
    data["documents"] = len(Krita.instance().documents())
    doc2, sketch2 = _sketch_doc(ctx, f"{ctx.name}-after")
    yield ctx.activate(doc2, sketch2)
    yield from generate(ctx, doc2)
    data["next_state"] = ctx.state()
    data["next_error"] = ctx.last_error()
    if ctx.state() != "preview":
        raise ScenarioFailed(f"no preview after a closed job: {ctx.last_error()!r}")


SCENARIOS = {
    "layer_sources": layer_sources,
    "result_targets": result_targets,
    "preview_undo": preview_undo,
    "per_document": per_document,
    "close_during_live": close_during_live,
    "close_during_job": close_during_job,
}
