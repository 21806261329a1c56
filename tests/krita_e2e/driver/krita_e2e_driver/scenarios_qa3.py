"""QA pass 3 (#17 Edit / Decompose, #15 Upscale): odd documents, odd reference layers, two
documents, closing during a job, undo, colour depths (tests/krita_e2e/test_krita_qa3.py).

Scenarios record what happened (no raising on a defect) so the pytest side asserts each
behaviour on its own.
"""

from __future__ import annotations

import time

from krita import InfoObject
from PyQt5.QtCore import QByteArray
from PyQt5.QtGui import QColor

from . import probes
from .context import Context, ScenarioFailed, Wait, ellipse_mask, gradient, rect_mask, sleep

GENERATE = "diffusion_layers_generate"
APPLY = "diffusion_layers_apply"
DECOMPOSE = "diffusion_layers_decompose"
LIVE = "diffusion_layers_toggle_live"
KLEIN = "tiny_flux2_klein"
LAYERED = "tiny_qwen_image_layered"


def _doc(ctx: Context, w: int, h: int, name: str, model: str = "RGBA", depth: str = "U8"):
    """A w x h document painted with the test gradient in 8-bit RGBA, then converted."""
    doc = ctx.new_document(w, h, name, fill=gradient)
    if (model, depth) != ("RGBA", "U8"):
        doc.setColorSpace(model, depth, "")
        doc.waitForDone()
    return doc


def _models(ctx: Context):
    c = ctx.controller()
    if c is None:
        raise ScenarioFailed("the plugin's controller was not found")
    c.connect_server()
    return c, Wait("the model list", lambda: c.connection.models is not None, 60)


def _names(doc) -> list:
    return [n.name() for n, _, _ in probes.walk(doc.rootNode()) if not n.type().endswith("mask")]


def _groups(doc) -> list:
    return [n for n, _, _ in probes.walk(doc.rootNode()) if n.type() == "grouplayer"]


def _decomposed(doc) -> list:
    return [g for g in _groups(doc) if g.name().startswith("Decomposed")]


def _flow_done(c, timeout_s: float = 240) -> Wait:
    return Wait("the decomposition", lambda: not c.decompose.busy, timeout_s)


def _gen_done(c, timeout_s: float = 240) -> Wait:
    return Wait("the edit", lambda: c.state != "generating", timeout_s)


def _solo(doc, node, rect) -> bytes:
    """What ``node`` alone looks like over ``rect``: 8-bit sRGB BGRA from the projection with
    every other layer hidden (its ancestors shown)."""
    keep = set()
    n = node
    while n is not None:
        keep.add(probes.node_id(n))
        n = n.parentNode()
    saved = []
    for other, _, _ in probes.walk(doc.rootNode()):
        if other.type().endswith("mask"):
            continue
        saved.append((other, other.visible()))
        inside = probes.node_id(other) in keep or _is_under(other, node)
        other.setVisible(inside)
    doc.refreshProjection()
    doc.waitForDone()
    x, y, w, h = rect
    image = doc.projection(x, y, w, h)
    data = bytes(image.constBits().asstring(image.byteCount()))
    for other, visible in saved:
        other.setVisible(visible)
    doc.refreshProjection()
    doc.waitForDone()
    return data


def _is_under(node, ancestor) -> bool:
    parent = node.parentNode()
    while parent is not None:
        if probes.node_id(parent) == probes.node_id(ancestor):
            return True
        parent = parent.parentNode()
    return False


def _diff(a: bytes, b: bytes) -> dict:
    """Largest alpha difference, and largest colour difference where both are > 25% opaque."""
    alpha = colour = 0
    for i in range(0, min(len(a), len(b)), 4):
        alpha = max(alpha, abs(a[i + 3] - b[i + 3]))
        if a[i + 3] > 64 and b[i + 3] > 64:
            colour = max(colour, *(abs(a[i + k] - b[i + k]) for k in range(3)))
    return {"alpha": alpha, "colour": colour, "opaque": sum(1 for v in a[3::4] if v > 64)}


# -- reference layers of every kind -------------------------------------------------------


def _fill_layer(doc, name: str):
    info = InfoObject()
    info.setProperty("color", QColor(20, 200, 40))
    sel = __import__("krita").Selection()
    sel.select(0, 0, doc.width(), doc.height(), 255)
    return doc.createFillLayer(name, "color", info, sel)


def qa3_references(ctx: Context):
    doc = _doc(ctx, 333, 517, ctx.name)
    root = doc.rootNode()
    background = root.childNodes()[0]
    ctx.add_paint_layer(doc, "Cup: red", [200, 300, 40, 30], (0, 0, 255, 255))
    ctx.add_paint_layer(doc, "Tasse ☕", [10, 400, 30, 30], (255, 0, 0, 255))
    half = ctx.add_paint_layer(doc, "Half", [100, 100, 20, 20], (0, 255, 0, 255))
    half.setOpacity(128)
    empty = doc.createNode("Empty", "paintlayer")
    root.addChildNode(empty, None)
    group = doc.createGroupLayer("Grp")
    root.addChildNode(group, None)
    inner = doc.createNode("InGrp", "paintlayer")
    group.addChildNode(inner, None)
    inner.setPixelData(QByteArray(bytes((9, 99, 199, 255)) * 400), 50, 50, 20, 20)
    hidden = doc.createGroupLayer("HiddenGrp")
    root.addChildNode(hidden, None)
    child = doc.createNode("Hidden child", "paintlayer")
    hidden.addChildNode(child, None)
    child.setPixelData(QByteArray(bytes((1, 2, 250, 255)) * 400), 5, 5, 20, 20)
    hidden.setVisible(False)
    fill = _fill_layer(doc, "Fill")
    root.addChildNode(fill, None)
    fill.setVisible(True)
    vector = doc.createVectorLayer("Vec")
    root.addChildNode(vector, None)
    doc.refreshProjection()
    doc.waitForDone()
    yield ctx.activate(doc, background)
    ctx.select(doc, rect_mask(48, 40), [60, 60, 48, 40])
    c, wait = _models(ctx)
    yield wait
    cases = {
        "colon": "make it red <layer:Cup: red>",
        "unicode": "add <layer:Tasse ☕>",
        "half": "like <layer:Half>",
        "group": "like <layer:Grp>",
        "fill": "like <layer:Fill>",
        "empty": "like <layer:Empty>",
        "hidden_child": "like <layer:Hidden child>",
        "vector_empty": "like <layer:Vec>",
        "four": "<layer:Half> <layer:Grp> <layer:Fill> <layer:Cup: red>",
        "unknown": "like <layer:Nope>",
    }
    out = {}
    for key, prompt in cases.items():
        c.update_settings(model=KLEIN, edit=True, prompt=prompt, steps=2)
        ctx.trigger(GENERATE)
        started = c.state == "generating"
        if started:
            yield _gen_done(c)
        session = c.session()
        params = session.params.to_dict() if started and session and session.params else {}
        out[key] = {
            "started": started,
            "state": c.state,
            "error": c.last_error,
            "refs": len(params.get("controls") or []),
            "prompt": params.get("prompt"),
        }
        c.discard()
        yield sleep(0.3)
    ctx.data["cases"] = out
    c.update_settings(edit=False, prompt="a cat")


# -- decompose at three depths: same picture, same seed → same layers ----------------------


def qa3_decompose_depths(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    found = {}
    for model, depth in (("RGBA", "U8"), ("RGBA", "U16"), ("RGBA", "F32"), ("GRAYA", "U8")):
        doc = ctx.new_document(96, 80, f"{ctx.name}-{depth}-{model}", fill=gradient)
        ctx.add_paint_layer(doc, "Dot", [30, 20, 24, 24], (20, 40, 220, 255))
        if (model, depth) != ("RGBA", "U8"):
            doc.setColorSpace(model, depth, "")
            doc.waitForDone()
        yield ctx.activate(doc, doc.rootNode().childNodes()[0])
        c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, seed=77, prompt="")
        image = doc.projection(0, 0, 96, 80)
        picture = bytes(image.constBits().asstring(image.byteCount()))
        ctx.trigger(DECOMPOSE)
        yield _flow_done(c)
        yield sleep(0.5)
        doc.waitForDone()
        groups = _decomposed(doc)
        entry = {
            "state": c.decompose.state,
            "message": c.decompose.message,
            "groups": [g.name() for g in groups],
            "space": [doc.colorModel(), doc.colorDepth()],
        }
        if groups:
            kids = groups[0].childNodes()
            entry["children"] = [k.name() for k in kids]
            entry["spaces"] = [[k.colorModel(), k.colorDepth()] for k in kids]
            entry["pixels"] = [_solo(doc, k, [0, 0, 96, 80]) for k in kids]
        entry["input"] = picture
        found[f"{model}-{depth}"] = entry
        ctx.trigger("edit_undo")
        yield sleep(0.8)
        doc.waitForDone()
        entry["groups_after_undo"] = [g.name() for g in _decomposed(doc)]
    base = found["RGBA-U8"]
    for key, entry in found.items():
        if key != "RGBA-U8" and "pixels" in entry and "pixels" in base:
            entry["diff"] = [
                _diff(a, b) for a, b in zip(base["pixels"], entry["pixels"], strict=False)
            ]
            entry["input_diff"] = _diff(base["input"], entry["input"])
    for entry in found.values():
        entry.pop("pixels", None)
        entry.pop("input", None)
    ctx.data["depths"] = found


# -- two documents --------------------------------------------------------------------------


def qa3_two_documents(ctx: Context):
    a = _doc(ctx, 200, 160, f"{ctx.name}-A")
    ctx.add_paint_layer(a, "Cup", [120, 90, 30, 30], (255, 0, 0, 255))
    b = _doc(ctx, 200, 160, f"{ctx.name}-B")
    ctx.add_paint_layer(b, "Cup", [10, 10, 30, 30], (0, 0, 255, 255))
    c, wait = _models(ctx)
    yield wait
    # decompose A, B active when it arrives
    yield _focus(ctx, a)
    yield ctx.activate(a, a.rootNode().childNodes()[0])
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    ctx.data["decompose_started"] = c.decompose.busy
    yield _focus(ctx, b)
    yield _flow_done(c)
    yield sleep(0.5)
    ctx.data["decompose"] = {
        "message": c.decompose.message,
        "a": [g.name() for g in _decomposed(a)],
        "b": [g.name() for g in _decomposed(b)],
        "active": ctx.app.activeDocument().name(),
    }
    # edit A with <layer:Cup>, B active when the preview arrives and when Apply is pressed
    yield _focus(ctx, a)
    ctx.select(a, rect_mask(40, 40), [20, 20, 40, 40])
    a_before, b_before = _names(a), _names(b)
    c.update_settings(model=KLEIN, edit=True, prompt="put <layer:Cup> here", steps=2)
    ctx.trigger(GENERATE)
    ctx.data["edit_started"] = c.state
    yield _focus(ctx, b)
    yield Wait("the edit", lambda: _preview_in(a) or _preview_in(b) or c.last_error, 60)
    yield sleep(0.5)
    ctx.data["edit"] = {
        "error": c.last_error,
        "a": [n for n in _names(a) if n not in a_before],
        "b": [n for n in _names(b) if n not in b_before],
    }
    ctx.trigger(APPLY)  # B is active: Apply acts on B's session (nothing), A's preview stays
    yield sleep(0.8)
    ctx.data["apply_in_b"] = {
        "a": [n for n in _names(a) if n not in a_before],
        "b": [n for n in _names(b) if n not in b_before],
    }
    yield _focus(ctx, a)
    ctx.trigger(APPLY)
    yield sleep(0.8)
    ctx.data["apply_in_a"] = {
        "a": [n for n in _names(a) if n not in a_before],
        "b": [n for n in _names(b) if n not in b_before],
    }
    c.update_settings(edit=False, prompt="a cat")


def _focus(ctx: Context, doc) -> Wait:
    """Make ``doc``'s view the active one, as clicking its tab does."""
    window = ctx.app.activeWindow()
    key = probes.node_id(doc.rootNode())
    for view in window.views():
        if view.document() is not None and probes.node_id(view.document().rootNode()) == key:
            window.showView(view)
            view.setVisible()
    ctx.app.setActiveDocument(doc)

    def done() -> bool:
        active = ctx.app.activeDocument()
        return active is not None and probes.node_id(active.rootNode()) == key

    return Wait(f"{doc.name()} active", done, 10)


def _preview_in(doc) -> bool:
    return any(n.startswith("[Preview]") for n in _names(doc))


# -- closing the document during a job, undo ---------------------------------------------


def qa3_close_during(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    doc = _doc(ctx, 3000, 2000, f"{ctx.name}-D")  # a few seconds on the server: closed first
    yield _focus(ctx, doc)
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    started = c.decompose.busy
    yield sleep(0.3)
    started = started and c.decompose.busy  # still running when the document closes
    doc.setBatchmode(True)
    doc.setModified(False)
    doc.close()
    yield _flow_done(c)
    yield sleep(1.0)
    ctx.data["decompose"] = {
        "started": started,
        "state": c.decompose.state,
        "message": c.decompose.message,
    }
    doc = _doc(ctx, 160, 128, f"{ctx.name}-E")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.update_settings(model=KLEIN, edit=True, prompt="make it blue", steps=2)
    ctx.trigger(GENERATE)
    started = c.state
    yield sleep(0.3)
    doc.setBatchmode(True)
    doc.setModified(False)
    doc.close()
    yield sleep(8)
    ctx.data["edit"] = {"started": started, "state": c.state, "error": c.last_error}
    # the plugin still works afterwards
    doc = _doc(ctx, 160, 128, f"{ctx.name}-F")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    yield sleep(0.5)
    ctx.data["after"] = {"message": c.decompose.message, "groups": len(_decomposed(doc))}
    c.update_settings(edit=False, prompt="a cat")


def qa3_undo_and_selection(ctx: Context):
    doc = _doc(ctx, 333, 517, ctx.name)
    ctx.add_paint_layer(doc, "Cup", [200, 300, 40, 30], (0, 0, 255, 255))
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c, wait = _models(ctx)
    yield wait
    before = _names(doc)
    rect = [50, 70, 120, 90]
    ctx.select(doc, ellipse_mask(rect[2], rect[3], 2.0), rect)
    c.update_settings(model=KLEIN, edit=True, prompt="put <layer:Cup> here", steps=2)
    ctx.trigger(GENERATE)
    yield _gen_done(c)
    yield sleep(0.5)
    ctx.trigger(APPLY)
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["edit_error"] = c.last_error
    ctx.data["after_edit"] = _names(doc)
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["after_edit_undo"] = _names(doc)
    ctx.data["before"] = before
    # decompose with the (still there) elliptic selection
    ctx.select(doc, ellipse_mask(rect[2], rect[3], 2.0), rect)
    c.update_settings(model=LAYERED, layers=3, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    yield sleep(0.5)
    doc.waitForDone()
    groups = _decomposed(doc)
    ctx.data["decompose_message"] = c.decompose.message
    kids = groups[0].childNodes() if groups else []
    info = []
    mask = ellipse_mask(rect[2], rect[3], 2.0)
    for k in kids:
        b = k.bounds()
        outside = 0
        px = bytes(k.pixelData(rect[0], rect[1], rect[2], rect[3]))
        for i in range(rect[2] * rect[3]):
            if mask[i] == 0 and px[4 * i + 3] > 0:
                outside += 1
        info.append(
            {
                "bounds": [b.x(), b.y(), b.width(), b.height()],
                "outside": outside,
                "opaque": sum(1 for v in px[3::4] if v > 0),
            }
        )
    ctx.data["selection"] = rect
    ctx.data["decomposed"] = info
    ctx.data["after_decompose"] = _names(doc)
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["after_decompose_undo"] = _names(doc)
    c.update_settings(edit=False, prompt="a cat")


# -- the Edit toggle, live with Edit, odd sizes and spaces, upscale -------------------------


def qa3_toggle_and_live(ctx: Context):
    doc = _doc(ctx, 128, 96, ctx.name)
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c, wait = _models(ctx)
    yield wait
    c.update_settings(model=KLEIN, edit=True, prompt="make it blue", steps=2)
    yield sleep(0.5)
    ctx.data["names"] = [m.name for m in c.connection.models.checkpoints]
    others = [n for n in ctx.data["names"] if n not in (KLEIN,) and "qwen" not in n]
    c.update_settings(model=others[0] if others else "")
    yield sleep(0.5)
    ctx.data["sd_model"] = c.settings.model
    ctx.data["mode_line"] = c.mode_preview()
    ctx.trigger(GENERATE)
    ctx.data["generate_state"] = c.state
    ctx.data["generate_error"] = c.last_error
    ctx.data["docker_texts"] = ctx.docker_texts()
    # live with Edit on, on the layered checkpoint (which cannot edit)
    c.update_settings(model=LAYERED)
    yield sleep(0.5)
    ctx.data["live_button_layered"] = _button_enabled(ctx, "Live")
    ctx.trigger(LIVE)
    ctx.data["live_layered"] = {"on": c.live.running, "error": c.last_error}
    yield sleep(5)
    ctx.data["live_layered"].update(
        running=c.live.running, live_error=c.live.last_error, layers=_names(doc)
    )
    if c.live.running:
        ctx.trigger(LIVE)
    yield sleep(1)
    c.update_settings(model=KLEIN)
    yield sleep(0.5)
    ctx.data["live_button_klein"] = _button_enabled(ctx, "Live")
    ctx.trigger(LIVE)
    ctx.data["live_klein"] = {"on": c.live.running, "error": c.last_error}
    yield sleep(6)
    ctx.data["live_klein"]["layers"] = _names(doc)
    ctx.data["live_klein"]["live_error"] = c.live.last_error
    if c.live.running:
        ctx.trigger(LIVE)
    yield sleep(1)
    c.update_settings(edit=False, prompt="a cat", live=False)


def _button_enabled(ctx: Context, text: str):
    from PyQt5.QtWidgets import QAbstractButton

    dock = ctx.docker()
    for button in dock.findChildren(QAbstractButton) if dock is not None else []:
        if button.text() == text:
            return button.isEnabled()
    return None


def qa3_sizes(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    out = {}
    # a 3x3 canvas
    doc = _doc(ctx, 3, 3, f"{ctx.name}-tiny")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    yield sleep(0.5)
    out["tiny_decompose"] = {
        "state": c.decompose.state,
        "message": c.decompose.message,
        "groups": [[k.bounds().width() for k in g.childNodes()] for g in _decomposed(doc)],
    }
    c.update_settings(model=KLEIN, edit=True, prompt="make it blue", steps=2)
    ctx.trigger(GENERATE)
    yield _gen_done(c)
    out["tiny_edit"] = {"state": c.state, "error": c.last_error, "layers": _names(doc)}
    c.discard()
    # CMYK edit of the whole canvas
    doc = _doc(ctx, 120, 90, f"{ctx.name}-cmyk", "CMYKA", "U8")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    ctx.trigger(GENERATE)
    yield _gen_done(c)
    yield sleep(0.5)
    ctx.trigger(APPLY)
    yield sleep(0.8)
    doc.waitForDone()
    top = doc.rootNode().childNodes()[-1]
    b = top.bounds()
    out["cmyk_edit"] = {
        "error": c.last_error,
        "layers": _names(doc),
        "top_bounds": [b.x(), b.y(), b.width(), b.height()],
        "top_space": [top.colorModel(), top.colorDepth()],
    }
    c.update_settings(edit=False, prompt="a cat")
    # upscale a GRAYA 333x517 document
    doc = _doc(ctx, 333, 517, f"{ctx.name}-gray", "GRAYA", "U8")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.upscale.update(factor=1.5, target="new_document", refine=False, model="")
    ctx.trigger("diffusion_layers_upscale")
    yield Wait("the upscale", lambda: not c.upscale.busy, 240)
    yield sleep(1)
    new = ctx.app.activeDocument()
    out["upscale_gray"] = {
        "state": c.upscale.state,
        "message": c.upscale.message,
        "size": [new.width(), new.height()] if new is not None else None,
        "space": [new.colorModel(), new.colorDepth()] if new is not None else None,
    }
    # a 3000x2000 canvas decomposed
    doc = _doc(ctx, 3000, 2000, f"{ctx.name}-big")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    began = time.monotonic()
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c, 300)
    yield sleep(0.5)
    doc.waitForDone()
    out["big_decompose"] = {
        "seconds": round(time.monotonic() - began, 1),
        "state": c.decompose.state,
        "message": c.decompose.message,
        "children": [
            [[k.bounds().x(), k.bounds().y(), k.bounds().width(), k.bounds().height()]]
            for g in _decomposed(doc)
            for k in g.childNodes()
        ],
    }
    ctx.data.update(out)


def qa3_more(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    out = ctx.data
    a = _doc(ctx, 200, 160, f"{ctx.name}-A")
    ctx.add_paint_layer(a, "Cup", [120, 90, 30, 30], (255, 0, 0, 255))
    b = _doc(ctx, 200, 160, f"{ctx.name}-B")
    ctx.add_paint_layer(b, "OnlyInB", [10, 10, 30, 30], (0, 0, 255, 255))
    yield _focus(ctx, a)
    # a) a reference layer that only the other document has
    c.update_settings(model=KLEIN, edit=True, prompt="add <layer:OnlyInB>", steps=2)
    ctx.trigger(GENERATE)
    out["other_doc_ref"] = {"state": c.state, "error": c.last_error}
    yield _gen_done(c)
    # b) the canvas cropped while a decomposition runs
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    a.crop(0, 0, 180, 160)
    a.waitForDone()
    yield _flow_done(c)
    yield sleep(0.5)
    out["cropped"] = {
        "state": c.decompose.state,
        "message": c.decompose.message,
        "groups": [g.name() for g in _decomposed(a)],
    }
    # c) an edit's preview showing, then Decompose, then Apply
    before = _names(a)
    c.update_settings(model=KLEIN, edit=True, prompt="make it blue", steps=2)
    ctx.select(a, rect_mask(40, 40), [20, 20, 40, 40])
    ctx.trigger(GENERATE)
    yield _gen_done(c)
    yield sleep(0.3)
    out["preview_names"] = [n for n in _names(a) if n not in before]
    a.setSelection(None)
    c.update_settings(model=LAYERED, layers=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    yield sleep(0.5)
    out["with_preview_decompose"] = {
        "message": c.decompose.message,
        "names": [n for n in _names(a) if n not in before],
        "state": c.state,
    }
    ctx.trigger(APPLY)
    yield sleep(0.8)
    a.waitForDone()
    out["after_apply"] = {
        "names": [n for n in _names(a) if n not in before],
        "top": [n.name() for n in a.rootNode().childNodes()],
        "error": c.last_error,
    }
    # d) Reuse settings on a decomposed layer
    group = _decomposed(a)[0] if _decomposed(a) else None
    if group is not None:
        yield ctx.activate(a, group.childNodes()[0])
        out["reuse"] = {"ok": c.reuse_settings(), "error": c.last_error, "edit": c.settings.edit}
    # e) odd layer counts
    counts = {}
    for wanted in (1, 20):
        c.update_settings(model=LAYERED, layers=wanted, edit=False, prompt="")
        ctx.trigger(DECOMPOSE)
        yield _flow_done(c)
        yield sleep(0.3)
        counts[str(wanted)] = c.decompose.message
    out["counts"] = counts
    # f) the active layer inside a group; g) undo then redo
    d = _doc(ctx, 128, 96, f"{ctx.name}-G")
    grp = d.createGroupLayer("G")
    d.rootNode().addChildNode(grp, None)
    inner = d.createNode("Inner", "paintlayer")
    grp.addChildNode(inner, None)
    inner.setPixelData(QByteArray(bytes((0, 200, 0, 255)) * 400), 10, 10, 20, 20)
    d.refreshProjection()
    d.waitForDone()
    yield ctx.activate(d, inner)
    c.update_settings(model=LAYERED, layers=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    yield sleep(0.5)
    out["in_group"] = {
        "active": d.activeNode().name() if d.activeNode() else None,
        "g_children": [n.name() for n in grp.childNodes()],
        "top": [n.name() for n in d.rootNode().childNodes()],
    }
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    ctx.trigger("edit_redo")
    yield sleep(0.8)
    d.waitForDone()
    groups = _decomposed(d)
    out["redo"] = {
        "groups": [g.name() for g in groups],
        "children": [
            [k.name(), probes.pixel_stats(probes.node_pixels(k, [0, 0, 128, 96]), 128, 96)]
            for g in groups
            for k in g.childNodes()
        ],
    }
    # h) an edit of a selection in a 16-bit document
    e = _doc(ctx, 160, 120, f"{ctx.name}-U16", "RGBA", "U16")
    yield _focus(ctx, e)
    rect = [30, 20, 50, 40]
    ctx.select(e, rect_mask(rect[2], rect[3]), rect)
    before = _names(e)
    c.update_settings(model=KLEIN, edit=True, prompt="make it blue", steps=2)
    ctx.trigger(GENERATE)
    yield _gen_done(c)
    yield sleep(0.3)
    ctx.trigger(APPLY)
    yield sleep(0.8)
    e.waitForDone()
    new = [n for n, _, _ in probes.walk(e.rootNode()) if n.name() not in before]
    new = [n for n in new if not n.type().endswith("mask")]
    out["u16_edit"] = {
        "error": c.last_error,
        "new": [
            [
                n.name(),
                n.colorDepth(),
                [n.bounds().x(), n.bounds().y(), n.bounds().width(), n.bounds().height()],
            ]
            for n in new
        ],
        "selection": rect,
    }
    c.update_settings(edit=False, prompt="a cat")


def _checkbox(ctx: Context, text: str):
    from PyQt5.QtWidgets import QCheckBox

    dock = ctx.docker()
    for box in dock.findChildren(QCheckBox) if dock is not None else []:
        if box.text() == text:
            return {"visible": box.isVisibleTo(dock), "checked": box.isChecked()}
    return None


def qa3_extra(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    out = ctx.data
    doc = _doc(ctx, 200, 160, ctx.name)
    cup = ctx.add_paint_layer(doc, "Cup", [120, 90, 30, 30], (255, 0, 0, 255))
    clone = doc.createCloneLayer("CupClone", cup)
    doc.rootNode().addChildNode(clone, None)
    doc.refreshProjection()
    doc.waitForDone()
    yield _focus(ctx, doc)
    # the Edit checkbox per checkpoint
    boxes = {}
    for model, edit in (("tiny", False), (KLEIN, False), (KLEIN, True), ("tiny", True)):
        c.update_settings(model=model, edit=edit)
        yield sleep(0.3)
        boxes[f"{model}-{edit}"] = _checkbox(ctx, "Edit")
    out["edit_box"] = boxes
    c.update_settings(model=KLEIN, edit=True, steps=2)
    # prompts: only a tag, empty, a clone layer
    prompts = {}
    for key, prompt in (
        ("only_tag", "<layer:Cup>"),
        ("empty", ""),
        ("clone", "x <layer:CupClone>"),
    ):
        c.update_settings(prompt=prompt)
        ctx.trigger(GENERATE)
        started = c.state == "generating"
        yield _gen_done(c)
        prompts[key] = {"started": started, "state": c.state, "error": c.last_error}
        c.discard()
        yield sleep(0.3)
    out["prompts"] = prompts
    # a batch of 2 edits, Apply all
    before = _names(doc)
    c.update_settings(prompt="make it blue", batch=2)
    ctx.select(doc, rect_mask(40, 40), [20, 20, 40, 40])
    ctx.trigger(GENERATE)
    yield _gen_done(c)
    out["batch"] = {"state": c.state, "error": c.last_error, "results": ctx.results_count()}
    ctx.trigger("diffusion_layers_apply_all")
    yield sleep(0.8)
    out["batch"]["new"] = [n for n in _names(doc) if n not in before]
    c.update_settings(batch=1)
    doc.setSelection(None)
    # Upscale (refine on) while Edit is on
    c.upscale.update(factor=1.5, target="new_document", refine=True, model="", strength=0.3)
    ctx.trigger("diffusion_layers_upscale")
    yield Wait("the upscale", lambda: not c.upscale.busy, 240)
    yield sleep(1.5)
    new = ctx.app.activeDocument()
    out["upscale_edit_on"] = {
        "state": c.upscale.state,
        "message": c.upscale.message,
        "error": c.last_error,
        "size": [new.width(), new.height()] if new is not None else None,
    }
    # a whole 3000x2000 canvas edited with a 3000x2000 reference
    big = _doc(ctx, 3000, 2000, f"{ctx.name}-big")
    ctx.add_paint_layer(big, "Huge", [0, 0, 3000, 2000], (10, 120, 240, 255))
    big.rootNode().childNodes()[-1].setOpacity(128)
    yield _focus(ctx, big)
    yield ctx.activate(big, big.rootNode().childNodes()[0])
    c.update_settings(model=KLEIN, edit=True, prompt="like <layer:Huge>", batch=1)
    began = time.monotonic()
    ctx.trigger(GENERATE)
    yield _gen_done(c, 300)
    out["big_edit"] = {
        "seconds": round(time.monotonic() - began, 1),
        "state": c.state,
        "error": c.last_error,
        "names": _names(big),
    }
    c.update_settings(edit=False, prompt="a cat")


def qa3_qwen(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    out = ctx.data
    doc = _doc(ctx, 160, 128, ctx.name)
    ctx.add_paint_layer(doc, "Cup", [100, 80, 30, 30], (255, 0, 0, 255))
    ctx.add_paint_layer(doc, "Mug ", [10, 80, 20, 20], (0, 255, 0, 255))
    yield _focus(ctx, doc)
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.update_settings(model="tiny", edit=True, prompt="make it red", steps=2)
    yield sleep(0.5)
    out["generate_button_tiny_edit"] = _button_enabled(ctx, "Generate")
    runs = {}
    for key, model, prompt in (
        ("edit_ref", "tiny_qwen_image_edit", "put <layer:Cup> here"),
        ("edit_plain", "tiny_qwen_image_edit", "make it red"),
        ("plus_ref", "tiny_qwen_image_edit_plus", "put <layer:Cup> here"),
        ("trailing_space", KLEIN, "put <layer:Mug > here"),
    ):
        c.update_settings(model=model, prompt=prompt)
        yield sleep(0.3)
        live = _button_enabled(ctx, "Live")
        ctx.select(doc, rect_mask(40, 40), [20, 20, 40, 40])
        ctx.trigger(GENERATE)
        started = c.state == "generating"
        yield _gen_done(c)
        session = c.session()
        params = session.params.to_dict() if started and session and session.params else {}
        runs[key] = {
            "started": started,
            "state": c.state,
            "error": c.last_error,
            "refs": len(params.get("controls") or []),
            "live_button": live,
        }
        c.discard()
        yield sleep(0.3)
    out["runs"] = runs
    c.update_settings(edit=False, prompt="a cat", model=KLEIN)


def _bounds(node) -> list:
    b = node.bounds()
    return [b.x(), b.y(), b.width(), b.height()]


def qa3_edges(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    out = ctx.data
    doc = _doc(ctx, 200, 160, ctx.name)
    yield _focus(ctx, doc)
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    c.update_settings(model=KLEIN, edit=True, prompt="make it red", steps=2, batch=1)
    cases = {}
    for key, mask, rect in (
        ("one_pixel", rect_mask(1, 1), [100, 80, 1, 1]),
        ("off_canvas", rect_mask(60, 60), [170, 130, 60, 60]),
    ):
        before = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
        ctx.select(doc, mask, rect)
        ctx.trigger(GENERATE)
        started = c.state == "generating"
        yield _gen_done(c)
        yield sleep(0.3)
        ctx.trigger(APPLY)
        yield sleep(0.8)
        doc.waitForDone()
        new = [n for n, _, _ in probes.walk(doc.rootNode()) if probes.node_id(n) not in before]
        new = [n for n in new if not n.type().endswith("mask")]
        cases[key] = {
            "started": started,
            "error": c.last_error,
            "new": [[n.name(), _bounds(n)] for n in new],
        }
    out["selections"] = cases
    doc.setSelection(None)
    # decompose with klein chosen and the default count (settings.layers = 0)
    c.update_settings(layers=0, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    yield sleep(0.5)
    out["klein_chosen_decompose"] = {
        "state": c.decompose.state,
        "message": c.decompose.message,
        "groups": [g.name() for g in _decomposed(doc)],
    }
    # a transparent canvas: Edit and Decompose
    empty = ctx.app.createDocument(128, 96, f"{ctx.name}-empty", "RGBA", "U8", "", 72.0)
    ctx.app.activeWindow().addView(empty)
    yield _focus(ctx, empty)
    bottom = empty.rootNode().childNodes()[0]
    bottom.setPixelData(QByteArray(bytes(128 * 96 * 4)), 0, 0, 128, 96)
    empty.refreshProjection()
    empty.waitForDone()
    c.update_settings(model=LAYERED, layers=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    yield _flow_done(c)
    out["empty_decompose"] = {"state": c.decompose.state, "message": c.decompose.message}
    c.update_settings(model=KLEIN, edit=True, prompt="make it red")
    ctx.trigger(GENERATE)
    started = c.state == "generating"
    yield _gen_done(c)
    out["empty_edit"] = {"started": started, "state": c.state, "error": c.last_error}
    c.discard()
    # the docker's error line after picking a checkpoint that can edit
    c.update_settings(model="tiny", edit=True)
    ctx.trigger(GENERATE)
    refused = c.last_error
    c.update_settings(model=KLEIN)
    yield sleep(0.5)
    out["stale"] = {"refused": refused, "after_switch": c.last_error, "texts": ctx.docker_texts()}
    c.update_settings(edit=False, prompt="a cat")


def qa3_cancel(ctx: Context):
    c, wait = _models(ctx)
    yield wait
    out = ctx.data
    big = _doc(ctx, 3000, 2000, f"{ctx.name}-big")
    small = _doc(ctx, 128, 96, f"{ctx.name}-small")
    yield _focus(ctx, big)
    c.update_settings(model=LAYERED, layers=2, steps=2, edit=False, prompt="")
    ctx.trigger(DECOMPOSE)
    started = c.decompose.busy
    yield _focus(ctx, small)
    ctx.trigger(DECOMPOSE)  # a second one while the first runs, in another document
    second = {"busy": c.decompose.busy, "message": c.decompose.message}
    yield sleep(0.3)
    ctx.trigger("diffusion_layers_cancel")
    out["cancel"] = {"started": started, "second": second, "message": c.decompose.message}
    yield sleep(8)
    out["cancel"]["groups_big"] = [g.name() for g in _decomposed(big)]
    out["cancel"]["groups_small"] = [g.name() for g in _decomposed(small)]
    out["cancel"]["state"] = c.decompose.state
    # an edit cancelled in flight: nothing placed later
    yield _focus(ctx, big)
    before = _names(big)
    c.update_settings(model=KLEIN, edit=True, prompt="make it red")
    ctx.trigger(GENERATE)
    yield sleep(0.3)
    ctx.trigger("diffusion_layers_cancel")
    state = c.state
    yield sleep(8)
    out["edit_cancel"] = {
        "after_cancel": state,
        "state": c.state,
        "new": [n for n in _names(big) if n not in before],
    }
    c.update_settings(edit=False, prompt="a cat")


SCENARIOS = {
    "qa3_cancel": qa3_cancel,
    "qa3_edges": qa3_edges,
    "qa3_qwen": qa3_qwen,
    "qa3_extra": qa3_extra,
    "qa3_more": qa3_more,
    "qa3_references": qa3_references,
    "qa3_decompose_depths": qa3_decompose_depths,
    "qa3_two_documents": qa3_two_documents,
    "qa3_close_during": qa3_close_during,
    "qa3_undo_and_selection": qa3_undo_and_selection,
    "qa3_toggle_and_live": qa3_toggle_and_live,
    "qa3_sizes": qa3_sizes,
}
