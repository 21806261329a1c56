"""QA scenarios: an artist's odd cases, driven through the plugin's actions only.

Every case records what it saw (state, error, layers, colour spaces) and never raises on the
plugin's behaviour, so one launch runs them all; the pytest side (test_krita_qa.py) asserts.
"""

from __future__ import annotations

import math
import struct
import time

from PyQt5.QtCore import QByteArray

from . import probes
from .context import PREVIEW_PREFIX, Context, Wait, gradient, sleep
from .scenarios_colour import feathered, recorder, space_of
from .scenarios_layers import _show

GENERATE = "diffusion_layers_generate"
CANCEL = "diffusion_layers_cancel"
APPLY = "diffusion_layers_apply"


def _ended(ctx: Context, timeout_s: float = 240) -> Wait:
    """The plugin left 'generating' (preview, error or idle) - never raises."""
    started = time.monotonic()

    def done() -> bool:
        state = ctx.state()
        return state in ("preview", "error", "idle") and time.monotonic() - started > 0.3

    return Wait("plugin settled", done, timeout_s)


def _generate(ctx: Context, doc):
    ctx.trigger(GENERATE)
    yield sleep(0.3)
    yield _ended(ctx)
    yield sleep(0.5)


def _layers(doc) -> list[dict]:
    out = []
    for node, parent, _ in probes.walk(doc.rootNode()):
        b = node.bounds()
        out.append({"name": node.name(), "type": node.type(),
                    "id": probes.node_id(node),
                    "parent": None if parent == doc.rootNode() else parent.name(),
                    "bounds": [b.x(), b.y(), b.width(), b.height()],
                    "space": list(space_of(node)) if node.type() == "paintlayer" else None})  # fmt: skip
    return out


def _status(ctx: Context, doc, extra: dict | None = None) -> dict:
    entry = {"state": ctx.state(), "error": ctx.last_error(), "layers": _layers(doc),
             "previews": [n.name() for n in probes.find_nodes(doc, PREVIEW_PREFIX)]}  # fmt: skip
    entry.update(extra or {})
    return entry


def _close(ctx: Context, doc, settle_s: float = 3.0):
    yield sleep(settle_s)  # thin documents: Krita 5.1.5 can segfault closing them at once
    doc.waitForDone()
    doc.setBatchmode(True)
    doc.setModified(False)
    doc.close()
    yield sleep(0.5)


def _new(ctx: Context, w: int, h: int, name: str, model="RGBA", depth="U8", pixel=None):
    doc = ctx.app.createDocument(w, h, name, model, depth, "", 72.0)
    ctx.app.activeWindow().addView(doc)
    ctx.app.setActiveDocument(doc)
    bottom = doc.rootNode().childNodes()[0]
    if pixel is None:
        bottom.setPixelData(QByteArray(gradient(w, h)), 0, 0, w, h)
    else:
        bottom.setPixelData(QByteArray(pixel * (w * h)), 0, 0, w, h)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


# 1. Odd document sizes ------------------------------------------------------------------


def qa_odd_sizes(ctx: Context):
    rec = recorder(ctx)
    ctl = ctx.controller()
    out = ctx.data.setdefault("cases", {})
    cases = [
        ("1x1_txt2img", 1, 1, 1.0, None),
        ("1x1_refine", 1, 1, 0.5, None),
        ("7x1001_txt2img", 7, 1001, 1.0, None),
        ("7x1001_inpaint_edge", 7, 1001, 1.0, [0, 500, 7, 40]),
        ("3000x17_txt2img", 3000, 17, 1.0, None),
        ("3000x17_refine", 3000, 17, 0.5, None),
        ("3000x17_inpaint_edge", 3000, 17, 1.0, [2950, 0, 50, 17]),
    ]
    for label, w, h, strength, rect in cases:
        ctl.update_settings(strength=strength, batch=1, steps=2)
        doc = _new(ctx, w, h, f"qa-{label}")
        if rect:
            feathered(doc, rect, 0)
        yield sleep(0.5)
        before = bytes(doc.pixelData(0, 0, w, h))
        jobs = len(rec.jobs)
        ctx.data["current"] = label
        yield from _generate(ctx, doc)
        entry = _status(ctx, doc, {"mode_label": ctl.mode_preview()})
        if len(rec.jobs) > jobs:
            p = rec.jobs[-1]["params"]
            entry["params"] = {k: p.get(k) for k in ("mode", "x", "y", "width", "height")}
        if ctx.state() == "preview":
            ctx.trigger(APPLY)
            yield sleep(0.8)
            entry["after_apply"] = _status(ctx, doc)
        entry["bottom_unchanged"] = bytes(
            doc.rootNode().childNodes()[0].pixelData(0, 0, w, h)) == before  # fmt: skip
        out[label] = entry
        yield from _close(ctx, doc)


# 2. Refine / txt2img in odd colour spaces (no selection) -------------------------------


SPACES = [
    ("GRAYA", "U16", struct.pack("<2H", 32768, 65535)),
    ("CMYKA", "U8", bytes((0, 0, 0, 128, 255))),
    ("RGBA", "F32", struct.pack("<4f", 0.5, 0.5, 0.5, 1.0)),
    ("LABA", "U16", struct.pack("<4H", 32768, 32768, 32768, 65535)),
    ("RGBA", "F16", struct.pack("<4e", 0.5, 0.5, 0.5, 1.0)),
]


def qa_refine_spaces(ctx: Context):
    rec = recorder(ctx)
    ctl = ctx.controller()
    out = ctx.data.setdefault("cases", {})
    for model, depth, pixel in SPACES:
        for strength in (0.5, 1.0):
            label = f"{model}/{depth}@{strength}"
            ctl.update_settings(strength=strength, batch=1, steps=2)
            doc = _new(ctx, 64, 48, f"qa-space-{model}-{depth}", model, depth, pixel)
            yield sleep(0.4)
            jobs = len(rec.jobs)
            bottom_before = bytes(doc.rootNode().childNodes()[0].pixelData(0, 0, 64, 48))
            yield from _generate(ctx, doc)
            entry = _status(ctx, doc, {"doc_space": list(space_of(doc))})
            if len(rec.jobs) > jobs:
                job = rec.jobs[-1]
                p = job["params"]
                entry["params"] = {k: p.get(k) for k in ("mode", "width", "height", "strength")}
                img = job.get("image", b"")
                entry["sent_first_bgra"] = list(img[:4])
            if ctx.state() == "preview":
                ctx.trigger(APPLY)
                yield sleep(0.8)
                entry["after_apply"] = _status(ctx, doc)
            entry["bottom_unchanged"] = (
                bytes(doc.rootNode().childNodes()[0].pixelData(0, 0, 64, 48)) == bottom_before
            )
            out[label] = entry
            yield from _close(ctx, doc, 0.5)


# 3. Preview operations: delete / move below / generate again / discard+undo -------------


def qa_preview_ops(ctx: Context):
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=2)
    out = ctx.data.setdefault("steps", [])

    def step(doc, label, extra=None):
        out.append(dict(_status(ctx, doc, extra), label=label,
                        active=doc.activeNode().name() if doc.activeNode() else None))  # fmt: skip

    # a) Delete the preview (as the artist would: Layer > Delete), then Apply.
    doc = _new(ctx, 96, 96, "qa-prev-a")
    sketch = ctx.add_paint_layer(doc, "Sketch", [10, 10, 30, 30], (0, 0, 255, 255))
    yield ctx.activate(doc, sketch)
    yield from _generate(ctx, doc)
    step(doc, "a: preview")
    previews = probes.find_nodes(doc, PREVIEW_PREFIX)
    if previews:
        yield ctx.activate(doc, previews[0])
        ctx.trigger("remove_layer")  # Krita refuses: the preview is locked
        yield sleep(0.6)
        step(doc, "a: remove_layer on the locked preview")
        previews[0].remove()  # as the Layers docker's delete of an unlocked copy would
        yield sleep(0.6)
        step(doc, "a: preview deleted via remove_layer")
        ctx.trigger(APPLY)
        yield sleep(0.6)
        step(doc, "a: apply after delete")
        ctx.trigger("edit_undo")
        yield sleep(0.8)
        step(doc, "a: undo delete")
        ctx.trigger(APPLY)
        yield sleep(0.8)
        step(doc, "a: apply after undo delete")
    yield from _close(ctx, doc, 0.5)

    # b) Move the preview to the bottom of the stack, then Apply.
    doc = _new(ctx, 96, 96, "qa-prev-b")
    sketch = ctx.add_paint_layer(doc, "Sketch", [10, 10, 30, 30], (0, 0, 255, 255))
    yield ctx.activate(doc, sketch)
    yield from _generate(ctx, doc)
    previews = probes.find_nodes(doc, PREVIEW_PREFIX)
    if previews:
        yield ctx.activate(doc, previews[0])
        ctx.trigger("move_layer_down")
        yield sleep(0.4)
        ctx.trigger("move_layer_down")
        yield sleep(0.6)
        step(doc, "b: preview moved down twice")
        ctx.trigger(APPLY)
        yield sleep(0.8)
        step(doc, "b: apply after move")
    yield from _close(ctx, doc, 0.5)

    # c) Generate again while a preview is shown; then Apply: only one preview, one layer.
    doc = _new(ctx, 96, 96, "qa-prev-c")
    yield from _generate(ctx, doc)
    step(doc, "c: first preview")
    yield from _generate(ctx, doc)
    step(doc, "c: second generate")
    ctx.trigger(APPLY)
    yield sleep(0.8)
    step(doc, "c: apply")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    step(doc, "c: undo apply")
    ctx.trigger("edit_redo")
    yield sleep(0.8)
    step(doc, "c: redo apply")
    yield from _close(ctx, doc, 0.5)

    # e) Batch 2: show the second result (thumbnail click), Apply, one Ctrl+Z.
    ctl.update_settings(batch=2)
    doc = _new(ctx, 96, 96, "qa-prev-e")
    yield from _generate(ctx, doc)
    step(doc, "e: preview of result 1")
    ctl.show_result(1)
    yield sleep(0.8)
    step(doc, "e: thumbnail 2 shown")
    ctx.trigger(APPLY)
    yield sleep(0.8)
    step(doc, "e: apply")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    step(doc, "e: undo apply")
    ctx.trigger(APPLY)  # what an artist does next when the docker shows a preview again
    yield sleep(0.8)
    step(doc, "e: apply again after undo")
    ctl.update_settings(batch=1)
    yield from _close(ctx, doc, 0.5)

    # d) Discard, undo (preview back), redo (gone), undo again, Apply.
    doc = _new(ctx, 96, 96, "qa-prev-d")
    yield from _generate(ctx, doc)
    ctl.discard()
    yield sleep(0.6)
    step(doc, "d: discarded")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    step(doc, "d: undo discard")
    ctx.trigger("edit_redo")
    yield sleep(0.8)
    step(doc, "d: redo discard")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    step(doc, "d: undo again")
    ctx.trigger(APPLY)
    yield sleep(0.8)
    step(doc, "d: apply")
    yield from _close(ctx, doc, 0.5)


# 4. Two documents ---------------------------------------------------------------------


def qa_two_docs(ctx: Context):
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=2)
    data = ctx.data
    a = _new(ctx, 96, 96, "qa-A")
    yield from _generate(ctx, a)
    data["a_preview"] = _status(ctx, a)
    data["a_doc_key"] = probes.node_id(a.rootNode())
    b = _new(ctx, 80, 64, "qa-B")
    yield _show(ctx, b)
    yield sleep(0.6)
    data["b_before"] = _status(ctx, b)
    yield from _generate(ctx, b)
    data["b_preview"] = _status(ctx, b)
    data["a_while_b"] = _status(ctx, a)
    ctx.trigger(APPLY)  # in B
    yield sleep(0.8)
    data["b_applied"] = _status(ctx, b)
    data["a_after_b_apply"] = _status(ctx, a)
    yield _show(ctx, a)
    yield sleep(0.8)
    data["a_active_state"] = ctx.state()
    ctx.trigger(APPLY)
    yield sleep(0.8)
    data["a_applied"] = _status(ctx, a)
    # A generates (slow), B becomes active, A is closed while its job runs.
    ctl.update_settings(steps=150, batch=4)
    yield _show(ctx, a)
    yield sleep(0.5)
    ctx.trigger(GENERATE)
    yield sleep(1.5)
    data["a_generating"] = ctx.state()
    data["a_generating_error"] = ctx.last_error()
    yield _show(ctx, b)
    yield sleep(0.5)
    data["b_state_while_a_job"] = ctx.state()
    a.waitForDone()
    a.setBatchmode(True)
    a.setModified(False)
    a.close()
    yield sleep(3)
    ctl.update_settings(steps=2, batch=1)
    data["b_after_a_closed"] = _status(ctx, b)
    yield from _generate(ctx, b)
    data["b_generate_after_close"] = _status(ctx, b)
    yield from _close(ctx, b, 0.5)


# 5. Cancel, then generate again; double Generate ---------------------------------------


def qa_cancel(ctx: Context):
    ctl = ctx.controller()
    data = ctx.data
    doc = _new(ctx, 512, 512, "qa-cancel")
    ctl.update_settings(strength=1.0, batch=1, steps=150)
    before = [n["id"] for n in _layers(doc)]
    ctx.trigger(GENERATE)
    yield sleep(0.2)
    ctx.trigger(GENERATE)  # a second press while the first job runs
    yield sleep(2.0)
    data["generating"] = ctx.state()
    ctx.trigger(CANCEL)
    yield sleep(0.3)
    data["after_cancel"] = _status(ctx, doc)
    yield sleep(4)
    data["later"] = _status(ctx, doc)
    data["nodes_same"] = before == [n["id"] for n in _layers(doc)]
    ctl.update_settings(steps=2)
    yield from _generate(ctx, doc)
    data["generate_again"] = _status(ctx, doc)
    yield from _close(ctx, doc, 0.5)


# 6. Backend stopped mid-job --------------------------------------------------------------


def qa_backend_mid_job(ctx: Context):
    ctl = ctx.controller()
    data = ctx.data
    doc = _new(ctx, 512, 512, "qa-down")
    ctl.update_settings(strength=1.0, batch=1, steps=150)
    before = [n["id"] for n in _layers(doc)]
    ctx.trigger(GENERATE)
    yield sleep(2.0)
    data["generating"] = ctx.state()
    yield ctx.harness("backend_stop")
    t0 = time.monotonic()
    yield Wait("job ends", lambda: ctx.state() != "generating", 150)
    data["ended_after_s"] = round(time.monotonic() - t0, 1)
    data["after_stop"] = _status(ctx, doc, {"docker_texts": ctx.docker_texts()})
    data["nodes_same"] = before == [n["id"] for n in _layers(doc)]
    yield ctx.harness("backend_start")
    yield sleep(3)
    ctl.update_settings(steps=2)
    yield from _generate(ctx, doc)
    data["after_restart"] = _status(ctx, doc)
    yield from _close(ctx, doc, 0.5)


SCENARIOS = {
    "qa_odd_sizes": qa_odd_sizes,
    "qa_refine_spaces": qa_refine_spaces,
    "qa_preview_ops": qa_preview_ops,
    "qa_two_docs": qa_two_docs,
    "qa_cancel": qa_cancel,
    "qa_backend_mid_job": qa_backend_mid_job,
}


# 7. Soft selections in non-8-bit documents: the layer's alpha is the selection value ----


def _alpha_of(raw: bytes, model: str, depth: str) -> list[int]:
    """Alpha of raw pixel bytes as 0-255 (rounded)."""
    if model == "RGBA" and depth == "U8":
        return list(raw[3::4])
    if model == "GRAYA" and depth == "U16":
        return [round(v / 257) for v in struct.unpack(f"<{len(raw) // 2}H", raw)[1::2]]
    if model == "CMYKA" and depth == "U8":
        return list(raw[4::5])
    if model == "RGBA" and depth == "F32":
        return [round(v * 255) for v in struct.unpack(f"<{len(raw) // 4}f", raw)[3::4]]
    if model == "RGBA" and depth == "U16":
        return [round(v / 257) for v in struct.unpack(f"<{len(raw) // 2}H", raw)[3::4]]
    raise ValueError(model + depth)


SOFT_SPACES = [
    ("RGBA", "F32", struct.pack("<4f", 0.5, 0.5, 0.5, 1.0)),
    ("GRAYA", "U16", struct.pack("<2H", 32768, 65535)),
    ("CMYKA", "U8", bytes((0, 0, 0, 128, 255))),
    ("RGBA", "U16", struct.pack("<4H", 32768, 32768, 32768, 65535)),
]


def qa_soft_spaces(ctx: Context):
    ctl = ctx.controller()
    out = ctx.data.setdefault("cases", {})
    size = 160
    for model, depth, pixel in SOFT_SPACES:
        for strength in (1.0, 0.5):
            label = f"{model}/{depth}@{strength}"
            ctl.update_settings(strength=strength, batch=1, steps=2)
            doc = _new(ctx, size, size, f"qa-soft-{model}-{depth}", model, depth, pixel)
            # Feathered selection at the left edge, reaching past the canvas.
            feathered(doc, [0, 40, 90, 80], 20)
            yield sleep(0.5)
            before = bytes(doc.pixelData(0, 0, size, size))
            known = {n["id"] for n in _layers(doc)}
            yield from _generate(ctx, doc)
            entry = _status(ctx, doc)
            if ctx.state() == "preview":
                ctx.trigger(APPLY)
                yield sleep(0.8)
                doc.waitForDone()
                entry["after_apply"] = _status(ctx, doc)
                new = [n for n, _, _ in probes.walk(doc.rootNode())
                       if probes.node_id(n) not in known and n.type() == "paintlayer"]  # fmt: skip
                if new:
                    layer = new[0]
                    entry["layer_space"] = list(space_of(layer))
                    y = 80
                    sel = bytes(doc.selection().pixelData(0, y, size, 1))
                    alpha = _alpha_of(bytes(layer.pixelData(0, y, size, 1)), model, depth)
                    entry["edge"] = [[x, v, alpha[x]] for x, v in enumerate(sel) if 0 < v < 255]
                    full_sel = bytes(doc.selection().pixelData(0, 0, size, size))
                    full_alpha = _alpha_of(bytes(layer.pixelData(0, 0, size, size)), model, depth)
                    entry["alpha_outside"] = sum(
                        1 for a, m in zip(full_alpha, full_sel, strict=True) if m == 0 and a)  # fmt: skip
                    # The projection outside the selection is unchanged (the artist's image).
                    layer.setVisible(False)
                    doc.refreshProjection()
                    doc.waitForDone()
                    entry["hidden_restores"] = bytes(doc.pixelData(0, 0, size, size)) == before
            out[label] = entry
            yield from _close(ctx, doc, 0.5)


# 8. Controls in non-RGB documents; a selection fully off the canvas in a thin document --


def qa_controls_spaces(ctx: Context):
    rec = recorder(ctx)
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=2)
    out = ctx.data.setdefault("cases", {})
    for model, depth, pixel in (("GRAYA", "U16", struct.pack("<2H", 65535, 65535)),
                                ("CMYKA", "U8", bytes((0, 0, 0, 0, 255))),
                                ("RGBA", "F16", struct.pack("<4e", 1.0, 1.0, 1.0, 1.0))):  # fmt: skip
        label = f"{model}/{depth}"
        doc = _new(ctx, 96, 96, f"qa-ctl-{model}", model, depth, pixel)
        group = doc.createGroupLayer("Lines group")
        doc.rootNode().addChildNode(group, None)
        lines = doc.createNode("Lines", "paintlayer")
        group.addChildNode(lines, None)
        black = {"GRAYA": struct.pack("<2H", 0, 65535), "CMYKA": bytes((0, 0, 0, 255, 255)),
                 "RGBA": struct.pack("<4e", 0.0, 0.0, 0.0, 1.0)}[model]  # fmt: skip
        lines.setPixelData(QByteArray(black * (40 * 10)), 20, 40, 40, 10)
        doc.refreshProjection()
        doc.waitForDone()
        yield sleep(0.6)
        yield ctx.activate(doc, group)
        ctl.controls.set([])
        added = ctl.add_active_layer_as_control("scribble")
        entry = {"added": bool(added), "add_error": ctx.last_error()}
        jobs = len(rec.jobs)
        yield from _generate(ctx, doc)
        entry.update(_status(ctx, doc))
        if len(rec.jobs) > jobs:
            job = rec.jobs[-1]
            ctl_img = job.get("control_0", b"")
            entry["control_bytes"] = len(ctl_img)
            p = job["params"]
            w = p["width"]
            # A black line pixel and a white background pixel of the control, as sent.
            entry["control_line_bgra"] = list(ctl_img[(45 * w + 30) * 4 : (45 * w + 30) * 4 + 4])
            entry["control_bg_bgra"] = list(ctl_img[(5 * w + 5) * 4 : (5 * w + 5) * 4 + 4])
            entry["part_names"] = sorted(k for k in job if k != "params")
        ctl.discard()
        ctl.controls.set([])
        out[label] = entry
        yield from _close(ctx, doc, 0.5)
    # A selection wholly off the canvas of a 7x1001 document: refused, nothing sent.
    doc = _new(ctx, 7, 1001, "qa-offcanvas")
    feathered(doc, [20, 100, 30, 30], 0)
    yield sleep(0.5)
    jobs = len(rec.jobs)
    ctx.trigger(GENERATE)
    yield sleep(1.5)
    yield _ended(ctx, 60)
    out["offcanvas"] = _status(ctx, doc, {"sent": len(rec.jobs) - jobs,
                                          "mode_label": ctl.mode_preview()})  # fmt: skip
    yield from _close(ctx, doc)


SCENARIOS.update(qa_soft_spaces=qa_soft_spaces, qa_controls_spaces=qa_controls_spaces)


# 9. The artist keeps working while a job runs -------------------------------------------


def _slow_job(ctx: Context, doc, change, label: str, steps: int = 150):
    """Start a slow job, call ``change(doc)`` while it runs, wait, apply; record all."""
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=steps)
    known = {n["id"] for n in _layers(doc)}
    ctx.trigger(GENERATE)
    yield sleep(1.0)
    entry = {"generating": ctx.state(), "start_error": ctx.last_error()}
    try:
        entry["change"] = change(doc)
    except Exception as exc:  # noqa: BLE001 - recorded
        entry["change_error"] = f"{type(exc).__name__}: {exc}"
    doc.waitForDone()
    yield sleep(0.5)
    entry["during"] = ctx.state()
    yield _ended(ctx, 240)
    yield sleep(0.8)
    entry["ended"] = _status(ctx, doc)
    if ctx.state() == "preview":
        ctx.trigger(APPLY)
        yield sleep(0.8)
        doc.waitForDone()
        entry["applied"] = _status(ctx, doc)
        entry["new"] = [n for n in entry["applied"]["layers"] if n["id"] not in known]
    ctl.update_settings(steps=2)
    ctx.data.setdefault("cases", {})[label] = entry


def qa_during_job(ctx: Context):
    # a) The active layer is deleted while the job runs.
    doc = _new(ctx, 512, 512, "qa-job-delete")
    sketch = ctx.add_paint_layer(doc, "Sketch", [10, 10, 30, 30], (0, 0, 255, 255))
    ctx.add_paint_layer(doc, "Top", [50, 50, 30, 30], (0, 255, 0, 255))
    yield ctx.activate(doc, sketch)

    def delete(d):
        for n in d.rootNode().childNodes():
            if n.name() == "Sketch":
                return n.remove()
        return None

    yield from _slow_job(ctx, doc, delete, "active_deleted")
    yield from _close(ctx, doc, 0.5)

    # b) The image is converted to RGBA/F32 while the job runs.
    doc = _new(ctx, 512, 512, "qa-job-convert")
    yield from _slow_job(
        ctx, doc, lambda d: d.setColorSpace("RGBA", "F32", "sRGB-elle-V2-g10.icc"), "converted"
    )
    ctx.data["cases"]["converted"]["doc_space"] = list(space_of(doc))
    yield from _close(ctx, doc, 0.5)

    # c) The canvas is cropped to 96x96 while the job runs.
    doc = _new(ctx, 512, 512, "qa-job-crop")
    yield from _slow_job(ctx, doc, lambda d: d.crop(0, 0, 256, 256), "cropped")
    ctx.data["cases"]["cropped"]["doc_size"] = [doc.width(), doc.height()]
    yield from _close(ctx, doc, 0.5)

    # d) The selection is removed while an inpaint job runs: the result keeps the old mask.
    doc = _new(ctx, 512, 512, "qa-job-deselect")
    feathered(doc, [160, 160, 120, 120], 0)
    yield sleep(0.4)

    def deselect(d):
        d.setSelection(None)
        return None

    yield from _slow_job(ctx, doc, deselect, "deselected")
    case = ctx.data["cases"]["deselected"]
    if case.get("new"):
        node = [n for n, _, _ in probes.walk(doc.rootNode())
                if probes.node_id(n) == case["new"][0]["id"]][0]  # fmt: skip
        alpha = bytes(node.pixelData(0, 0, 512, 512))[3::4]
        case["alpha_bbox"] = probes.alpha_bbox(alpha, 512, 512)
    yield from _close(ctx, doc, 0.5)

    # e) Hidden active layer, locked active layer: generate still lands above it.
    for label, how in (("hidden_active", "hidden"), ("locked_active", "locked")):
        doc = _new(ctx, 96, 96, f"qa-{label}")
        sketch = ctx.add_paint_layer(doc, "Sketch", [10, 10, 30, 30], (0, 0, 255, 255))
        if how == "hidden":
            sketch.setVisible(False)
        else:
            sketch.setLocked(True)
        doc.refreshProjection()
        yield ctx.activate(doc, sketch)
        yield from _slow_job(ctx, doc, lambda d: None, label, steps=2)
        yield from _close(ctx, doc, 0.5)


SCENARIOS.update(qa_during_job=qa_during_job)


# 10. Image geometry changed while a job runs; thumbnails + Discard / Apply all + undo ----


def qa_geometry_job(ctx: Context):
    # a) Image > Crop to (128, 128, 256, 256) while a whole-canvas job runs.
    doc = _new(ctx, 512, 512, "qa-geo-crop-offset")
    yield from _slow_job(ctx, doc, lambda d: d.crop(128, 128, 256, 256), "crop_offset")
    ctx.data["cases"]["crop_offset"]["doc_size"] = [doc.width(), doc.height()]
    yield from _close(ctx, doc, 0.5)
    # b) Image > Scale to 256x256 while a whole-canvas job runs.
    doc = _new(ctx, 512, 512, "qa-geo-scale")
    yield from _slow_job(ctx, doc, lambda d: d.scaleImage(256, 256, 72, 72, "Bicubic"), "scaled")
    ctx.data["cases"]["scaled"]["doc_size"] = [doc.width(), doc.height()]
    yield from _close(ctx, doc, 0.5)
    # b2) Image > Resize Canvas (larger, content kept at the origin) during an inpaint job.
    doc = _new(ctx, 512, 512, "qa-geo-resize-canvas")
    feathered(doc, [200, 200, 64, 64], 0)
    yield sleep(0.5)
    yield from _slow_job(ctx, doc, lambda d: d.resizeImage(0, 0, 640, 512), "resized_canvas")
    ctx.data["cases"]["resized_canvas"]["doc_size"] = [doc.width(), doc.height()]
    yield from _close(ctx, doc, 0.5)
    # b3) Image > Rotate 90° of a non-square image during a job.
    doc = _new(ctx, 512, 384, "qa-geo-rotate")
    yield from _slow_job(ctx, doc, lambda d: d.rotateImage(math.pi / 2), "rotated")
    ctx.data["cases"]["rotated"]["doc_size"] = [doc.width(), doc.height()]
    yield from _close(ctx, doc, 0.5)
    # b4) Crop after the preview is shown, then Apply: refused, nothing applied.
    doc = _new(ctx, 256, 256, "qa-geo-crop-after-preview")
    ctx.controller().update_settings(strength=1.0, batch=1, steps=2)
    yield from _generate(ctx, doc)
    entry = {"ended": _status(ctx, doc)}
    doc.crop(64, 64, 128, 128)
    doc.waitForDone()
    yield sleep(0.5)
    ctx.trigger(APPLY)
    yield sleep(0.8)
    entry["applied"] = _status(ctx, doc, {"doc_size": [doc.width(), doc.height()]})
    ctx.data["cases"]["crop_after_preview"] = entry
    yield from _close(ctx, doc, 0.5)
    # c) Batch 2: thumbnail 2, Discard, Ctrl+Z, Apply.
    ctl = ctx.controller()
    out = ctx.data.setdefault("steps", [])

    def step(d, label):
        out.append(dict(_status(ctx, d), label=label))

    ctl.update_settings(batch=2, steps=2, strength=1.0)
    doc = _new(ctx, 96, 96, "qa-geo-discard")
    yield from _generate(ctx, doc)
    ctl.show_result(1)
    yield sleep(0.8)
    ctl.discard()
    yield sleep(0.8)
    step(doc, "c: discarded after thumbnail 2")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    step(doc, "c: undo discard")
    ctx.trigger(APPLY)
    yield sleep(0.8)
    step(doc, "c: apply")
    yield from _close(ctx, doc, 0.5)
    # d) Batch 2: thumbnail 2, Apply all, Ctrl+Z.
    doc = _new(ctx, 96, 96, "qa-geo-applyall")
    yield from _generate(ctx, doc)
    ctl.show_result(1)
    yield sleep(0.8)
    ctx.trigger("diffusion_layers_apply_all")
    yield sleep(0.8)
    step(doc, "d: apply all after thumbnail 2")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    step(doc, "d: undo apply all")
    ctl.update_settings(batch=1)
    yield from _close(ctx, doc, 0.5)


SCENARIOS.update(qa_geometry_job=qa_geometry_job)


# 11. Live mode in odd documents; closing them mid-live ---------------------------------


def _frames(ctl) -> int:
    return int(getattr(ctl.live, "frames_shown", 0) or 0)


def qa_live_odd(ctx: Context):
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=2)
    out = ctx.data.setdefault("cases", {})
    docs = [
        ("f32", 128, 128, "RGBA", "F32", struct.pack("<4f", 0.5, 0.5, 0.5, 1.0)),
        ("cmyk", 128, 128, "CMYKA", "U8", bytes((0, 0, 0, 128, 255))),
        ("wide", 3000, 17, "RGBA", "U8", None),
    ]
    for label, w, h, model, depth, pixel in docs:
        doc = _new(ctx, w, h, f"qa-live-{label}", model, depth, pixel)
        sketch = doc.createNode("Sketch", "paintlayer")
        doc.rootNode().addChildNode(sketch, None)
        yield sleep(0.5)
        yield ctx.activate(doc, sketch)
        known = {n["id"] for n in _layers(doc)}
        ctx.trigger("diffusion_layers_toggle_live")
        shown = _frames(ctl)  # read after the toggle: the counter restarts per live session
        yield _frame_or_give_up(ctl, shown, 45)
        yield sleep(0.5)
        entry = _status(ctx, doc, {"running": bool(ctl.live.running),
                                   "frames": _frames(ctl) - shown})  # fmt: skip
        if ctl.live.running and entry["frames"] > 0:
            ctx.trigger(APPLY)
            yield sleep(1.0)
            doc.waitForDone()
            entry["applied"] = _status(ctx, doc)
            entry["new"] = [n for n in entry["applied"]["layers"] if n["id"] not in known]
            # Close the document while live still runs, without waiting for the image.
            doc.setBatchmode(True)
            doc.setModified(False)
            doc.close()
            yield sleep(2.5)
            entry["running_after_close"] = bool(ctl.live.running)
            entry["state_after_close"] = ctx.state()
            entry["error_after_close"] = ctx.last_error()
        else:
            if ctl.live.running:
                ctx.trigger("diffusion_layers_toggle_live")
                yield sleep(1.0)
            yield from _close(ctx, doc, 0.5)
        out[label] = entry
    ctx.data["alive"] = True


SCENARIOS.update(qa_live_odd=qa_live_odd)


def _frame_or_give_up(ctl, shown: int, seconds: float) -> Wait:
    deadline = time.monotonic() + seconds
    return Wait(
        "a live frame (or give up)",
        lambda: _frames(ctl) > shown or not ctl.live.running or time.monotonic() > deadline,
        seconds + 10,
    )


def qa_live_restart(ctx: Context):
    """Which one stops live: a CMYK document, or a document closed during live before?"""
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=2)
    out = ctx.data.setdefault("cases", {})
    plans = [
        ("cmyk_first", "CMYKA", "U8", bytes((0, 0, 0, 128, 255)), False),
        ("rgba_closed_during_live", "RGBA", "U8", None, True),
        ("rgba_after_close", "RGBA", "U8", None, False),
    ]
    for label, model, depth, pixel, close_live in plans:
        doc = _new(ctx, 128, 128, f"qa-lr-{label}", model, depth, pixel)
        sketch = doc.createNode("Sketch", "paintlayer")
        doc.rootNode().addChildNode(sketch, None)
        yield sleep(0.5)
        yield ctx.activate(doc, sketch)
        ctx.trigger("diffusion_layers_toggle_live")
        shown = _frames(ctl)  # read after the toggle: the counter restarts per live session
        running_at_start = bool(ctl.live.running)
        yield _frame_or_give_up(ctl, shown, 45)
        entry = _status(ctx, doc, {"running_at_start": running_at_start,
                                   "running": bool(ctl.live.running),
                                   "frames": _frames(ctl) - shown,
                                   "docker_texts": ctx.docker_texts()})  # fmt: skip
        out[label] = entry
        if close_live:
            doc.setBatchmode(True)
            doc.setModified(False)
            doc.close()
            yield sleep(2.5)
            entry["running_after_close"] = bool(ctl.live.running)
        else:
            if ctl.live.running:
                ctx.trigger("diffusion_layers_toggle_live")
                yield sleep(1.0)
            entry["running_after_toggle_off"] = bool(ctl.live.running)
            yield from _close(ctx, doc, 0.5)


SCENARIOS.update(qa_live_restart=qa_live_restart)
