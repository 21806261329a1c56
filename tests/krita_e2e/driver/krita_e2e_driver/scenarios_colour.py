"""Pixels in and out of real Krita (issue 12, kinds 1, 2, 3, 9), one launch:

* every colour model and depth: what reaches the backend is Krita's own 8-bit sRGB conversion
  of the image (a 50 % linear grey arrives as 188), results land in the document's colour
  space and convert back to what the backend sent, pixels outside the selection unchanged;
* selections at the canvas edge are clipped before the mode is chosen; one off the canvas is
  refused and nothing is sent;
* a soft selection's value is the layer's alpha, once (inpaint, refine, apply all, live);
* results (and live frames) that do not cover the requested area are refused, nothing placed.

What the plugin hands its HTTP client is recorded by wrapping the client's ``submit_job``,
``watch``, ``fetch_raw`` and ``live_frame`` (the recording proxy at the plugin's edge); the same
wrappers inject wrong-sized results. Waits are on the plugin's own state, never layer names.
"""

from __future__ import annotations

import json
import struct
import time

from krita import Krita, Selection
from PyQt5.QtCore import QByteArray

from . import probes
from .context import Context, ScenarioFailed, Wait, gradient, sleep

GENERATE = "diffusion_layers_generate"
APPLY = "diffusion_layers_apply"
APPLY_ALL = "diffusion_layers_apply_all"
TOGGLE_LIVE = "diffusion_layers_toggle_live"
SRGB = "sRGB-elle-V2-srgbtrc.icc"


# 1. The recording proxy at the plugin's HTTP client ---------------------------------------


class Recorder:
    """Wraps the plugin client's calls once; ``fault`` (None, "double", "short") bends the
    next results/frames the way a broken server would."""

    def __init__(self, client) -> None:
        self.client = client
        self.jobs: list[dict] = []  # every submitted job: params + raw parts
        self.results: dict[str, tuple[bytes, int, int]] = {}  # raw_url -> (data, w, h) as sent on
        self.boxes: dict[str, tuple[int, int, int, int]] = {}  # raw_url -> (x, y, w, h) in region
        self.fault: str | None = None
        self._bent: dict[str, str] = {}  # raw_url -> fault for that result
        submit, watch, fetch_raw, live_frame = (
            client.submit_job,
            client.watch,
            client.fetch_raw,
            client.live_frame,
        )

        def submit_job(parts, on_ok, on_error):
            entry = {p.name: bytes(p.data) for p in parts}
            entry["params"] = json.loads(entry["params"].decode("utf-8"))
            self.jobs.append(entry)
            return submit(parts, on_ok, on_error)

        def watch_job(job_id, on_progress, on_finished, on_error):
            def finished(info):
                for item in getattr(info, "results", None) or []:
                    self.boxes[item.raw_url] = (item.x, item.y, item.width, item.height)
                if self.fault and getattr(info, "results", None):
                    for item in info.results:
                        self._bent[item.raw_url] = self.fault
                        item.width, item.height = _bent_size(self.fault, item.width, item.height)
                on_finished(info)

            return watch(job_id, on_progress, finished, on_error)

        def fetch(url, on_ok, on_error):
            def ok(data, width, height):
                fault = self._bent.pop(url, None)
                if fault:
                    data, width, height = _bend(fault, data, width, height)
                self.results[url] = (data, width, height)
                on_ok(data, width, height)

            return fetch_raw(url, ok, on_error)

        def frame(session, parts, on_ok, on_error):
            def ok(data, headers):
                if self.fault:
                    w, h = int(headers.get("x-width", 0)), int(headers.get("x-height", 0))
                    data, w, h = _bend(self.fault, data, w, h)
                    headers = dict(headers, **{"x-width": str(w), "x-height": str(h)})
                on_ok(data, headers)

            return live_frame(session, parts, ok, on_error)

        client.submit_job, client.watch = submit_job, watch_job
        client.fetch_raw, client.live_frame = fetch, frame


def _bent_size(fault: str, width: int, height: int) -> tuple[int, int]:
    return (width * 2, height * 2) if fault == "double" else (width - 3, height)


def _bend(fault: str, data: bytes, width: int, height: int) -> tuple[bytes, int, int]:
    """A 2x (nearest) or a 3 px narrower copy of BGRA8 ``data``."""
    rows = [data[y * width * 4 : (y + 1) * width * 4] for y in range(height)]
    if fault == "double":
        wide = [b"".join(row[i : i + 4] * 2 for i in range(0, len(row), 4)) for row in rows]
        return b"".join(r for r in wide for _ in (0, 1)), width * 2, height * 2
    return b"".join(r[: (width - 3) * 4] for r in rows), width - 3, height


def recorder(ctx: Context) -> Recorder:
    ctl = ctx.controller()
    if ctl is None:
        raise ScenarioFailed("the plugin's controller is not reachable")
    found = getattr(ctl.client, "_e2e_recorder", None)
    if found is None:
        found = Recorder(ctl.client)
        ctl.client._e2e_recorder = found
    return found


# 2. Documents in any colour space, conversions by Krita ----------------------------------


def open_document(ctx: Context, size: int, name: str, model: str = "RGBA", depth: str = "U8"):
    doc = ctx.app.createDocument(size, size, name, model, depth, "", 72.0)
    ctx.app.activeWindow().addView(doc)
    ctx.app.setActiveDocument(doc)
    return doc


def to_srgb8(raw: bytes, width: int, height: int, space: tuple[str, str, str]) -> bytes:
    """Bytes in ``space`` as 8-bit sRGB BGRA, converted by Krita (a scratch document)."""
    scratch = Krita.instance().createDocument(width, height, "probe", *space, 72.0)
    try:
        scratch.rootNode().childNodes()[0].setPixelData(QByteArray(raw), 0, 0, width, height)
        scratch.refreshProjection()
        scratch.waitForDone()
        return image_bytes(scratch.projection(0, 0, width, height))
    finally:
        scratch.setModified(False)
        scratch.close()


def from_srgb8(bgra: bytes, width: int, height: int, space: tuple[str, str, str]) -> bytes:
    scratch = Krita.instance().createDocument(width, height, "probe", "RGBA", "U8", SRGB, 72.0)
    try:
        layer = scratch.rootNode().childNodes()[0]
        layer.setPixelData(QByteArray(bgra), 0, 0, width, height)
        layer.setColorSpace(*space)
        scratch.waitForDone()
        return bytes(layer.pixelData(0, 0, width, height))
    finally:
        scratch.setModified(False)
        scratch.close()


def image_bytes(image) -> bytes:
    from PyQt5.QtGui import QImage

    if image.format() != QImage.Format_ARGB32:
        image = image.convertToFormat(QImage.Format_ARGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    data = bytes(ptr)
    row = image.width() * 4
    if image.bytesPerLine() == row:
        return data
    stride = image.bytesPerLine()
    return b"".join(data[y * stride : y * stride + row] for y in range(image.height()))


def undo_count(ctx: Context) -> int | None:
    """Rows in the History docker's undo list, or None without it."""
    from PyQt5.QtWidgets import QAbstractItemView

    for dock in ctx.app.dockers():
        if dock.objectName() == "History":
            dock.show()
            for view in dock.findChildren(QAbstractItemView):
                if view.model() is not None:
                    return int(view.model().rowCount())
    return None


def space_of(item) -> tuple[str, str, str]:
    return (item.colorModel(), item.colorDepth(), item.colorProfile())


def feathered(doc, rect: list[int], feather: int):
    """Select ``rect`` and feather it like Select ▸ Feather Selection."""
    selection = Selection()
    selection.select(*rect, 255)
    if feather:
        selection.feather(feather)
    doc.setSelection(selection)
    doc.waitForDone()
    return doc.selection()


def changed_outside(before: bytes, after: bytes, mask: bytes, bpp: int) -> int:
    """Pixels whose bytes differ where the selection is 0 (canvas-sized buffers)."""
    count = 0
    for i, m in enumerate(mask):
        if m == 0 and before[i * bpp : (i + 1) * bpp] != after[i * bpp : (i + 1) * bpp]:
            count += 1
    return count


# 3. Waiting on the plugin --------------------------------------------------------------


def wait_preview(ctx: Context, timeout_s: float = 180) -> Wait:
    """The plugin shows a result (its own state), or fails with its error."""

    def ready() -> bool:
        state = ctx.state()
        if state == "error":
            raise ScenarioFailed(f"plugin went to 'error': {ctx.last_error()!r}")
        return state == "preview"

    return Wait("plugin state 'preview'", ready, timeout_s)


def wait_settled(ctx: Context, timeout_s: float = 180) -> Wait:
    return Wait("plugin not generating", lambda: ctx.state() != "generating", timeout_s)


def new_layers(doc, known: set) -> list:
    return [
        n
        for n, _, _ in probes.walk(doc.rootNode())
        if probes.node_id(n) not in known and n.type() == "paintlayer"
    ]


def generate_apply(ctx: Context, doc, action: str = APPLY):
    """Generate, wait for the preview, apply; returns the new paint layers."""
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    ctx.trigger(GENERATE)
    yield wait_preview(ctx)
    ctx.trigger(action)
    yield Wait("plugin idle after apply", lambda: ctx.state() in ("idle", None), 60)
    yield sleep(0.3)
    doc.waitForDone()
    return new_layers(doc, known)


def settings(ctx: Context, **values) -> None:
    ctx.controller().update_settings(**values)


# 4. Kind 1: every colour model, depth and profile ----------------------------------------

#: (model, depth, raw pixel of the background, expected sRGB byte of it or None)
DOCUMENTS = [
    ("RGBA", "U8", bytes((128, 128, 128, 255)), 128),
    ("RGBA", "U16", struct.pack("<4H", 32768, 32768, 32768, 65535), 188),
    ("RGBA", "F16", struct.pack("<4e", 0.5, 0.5, 0.5, 1.0), 188),
    ("RGBA", "F32", struct.pack("<4f", 0.5, 0.5, 0.5, 1.0), 188),
    ("GRAYA", "U8", bytes((128, 255)), 128),
    ("GRAYA", "U16", struct.pack("<2H", 32768, 65535), 188),
    ("CMYKA", "U8", bytes((0, 0, 0, 128, 255)), None),
    ("LABA", "U16", struct.pack("<4H", 32768, 32768, 32768, 65535), None),
]
SIZE = 96
SELECT = [24, 20, 48, 40]


def colour_models(ctx: Context):
    """Inpaint a selection in a document of every model/depth; byte-check both conversions."""
    rec = recorder(ctx)
    settings(ctx, strength=1.0, batch=1)
    out = ctx.data.setdefault("documents", {})
    for model, depth, pixel, expected in DOCUMENTS:
        key = f"{model}/{depth}"
        doc = open_document(ctx, SIZE, f"colour-{model}-{depth}", model, depth)
        bottom = doc.rootNode().childNodes()[0]
        bottom.setPixelData(QByteArray(pixel * (SIZE * SIZE)), 0, 0, SIZE, SIZE)
        # A colour patch, painted through Krita's own conversion from 8-bit sRGB.
        patch = from_srgb8(bytes((40, 160, 220, 255)) * (16 * 16), 16, 16, space_of(doc))
        bottom.setPixelData(QByteArray(patch), 60, 60, 16, 16)
        doc.refreshProjection()
        doc.waitForDone()
        yield sleep(0.3)
        entry: dict = {"space": list(space_of(doc))}
        out[key] = entry
        full = bytes(doc.pixelData(0, 0, SIZE, SIZE))
        bpp = len(full) // (SIZE * SIZE)
        view = image_bytes(doc.projection(0, 0, SIZE, SIZE))  # Krita's 8-bit sRGB view
        # What reaches the backend is exactly Krita's own conversion of the image.
        feathered(doc, SELECT, 0)
        yield sleep(0.2)
        jobs_before = len(rec.jobs)
        undo_before = undo_count(ctx)
        try:
            layers = yield from generate_apply(ctx, doc)
        except ScenarioFailed as exc:
            entry["error"] = str(exc)
            ctx.close_all()
            continue
        job = rec.jobs[jobs_before]
        p = job["params"]
        region = [p["x"], p["y"], p["width"], p["height"]]
        entry["params"] = {k: p[k] for k in ("mode", "x", "y", "width", "height", "strength")}
        sent = job.get("image", b"")
        krita_view = b"".join(
            view[((region[1] + row) * SIZE + region[0]) * 4 : ((region[1] + row) * SIZE
                                                             + region[0] + region[2]) * 4]
            for row in range(region[3])
        )  # fmt: skip
        mask = bytes(doc.selection().pixelData(0, 0, SIZE, SIZE))
        entry["sent_is_projection"] = sent == krita_view
        corner = sent[:4]  # (x, y) = region origin: the grey background
        entry["sent_background_bgra"] = list(corner)
        entry["expected_background"] = expected
        # What lands: one layer in the document's space (one undo step), converting back to
        # the result.
        entry["layers"] = len(layers)
        after_count = undo_count(ctx)
        entry["undo_steps_added"] = None if undo_before is None else after_count - undo_before
        if layers:
            layer = layers[0]
            entry["layer_space"] = list(space_of(layer))
            url, (data, w, h) = list(rec.results.items())[-1]
            ox, oy, _, _ = rec.boxes[url]
            x, y = region[0] + ox, region[1] + oy
            entry["layer_bounds"] = _bounds(layer)
            entry["result_box"] = [x, y, w, h]
            stored = bytes(layer.pixelData(x, y, w, h))
            entry["layer_is_krita_conversion"] = stored == from_srgb8(data, w, h, space_of(doc))
            back = to_srgb8(stored, w, h, space_of(layer))
            entry["max_channel_diff"] = _max_diff(back, data, grey=model == "GRAYA")
            entry["max_alpha_diff"] = max(
                abs(a - b) for a, b in zip(back[3::4], data[3::4], strict=True)
            )
        after = bytes(doc.pixelData(0, 0, SIZE, SIZE))
        entry["changed_outside"] = changed_outside(full, after, mask, bpp)
        rec.results.clear()
        ctx.close_all()
        yield sleep(0.3)


def _max_diff(back: bytes, sent: bytes, grey: bool) -> int:
    """Largest channel difference where the result is opaque enough to compare (a grey
    document keeps luminance only: compare grey to the result's luminance)."""
    worst = 0
    for i in range(0, len(sent), 4):
        if sent[i + 3] < 250:
            continue
        if grey:
            b, g, r = sent[i], sent[i + 1], sent[i + 2]
            lum = _srgb_luma(r, g, b)
            worst = max(worst, abs(back[i + 2] - lum))
        else:
            worst = max(worst, *(abs(back[i + c] - sent[i + c]) for c in range(3)))
    return worst


def _srgb_luma(r: int, g: int, b: int) -> int:
    def lin(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    y = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    s = y * 12.92 if y <= 0.0031308 else 1.055 * y ** (1 / 2.4) - 0.055
    return round(s * 255)


def colour_control_f32(ctx: Context):
    """A control layer in a linear-float document: the control image sent is Krita's 8-bit
    sRGB conversion of the layer; refine the whole image, apply in the document's space."""
    rec = recorder(ctx)
    settings(ctx, strength=0.5, batch=1)
    doc = open_document(ctx, 128, "colour-control", "RGBA", "F32")
    grey = struct.pack("<4f", 0.5, 0.5, 0.5, 1.0)
    doc.rootNode().childNodes()[0].setPixelData(QByteArray(grey * (128 * 128)), 0, 0, 128, 128)
    sketch = doc.createNode("Sketch", "paintlayer")
    doc.rootNode().addChildNode(sketch, None)
    line = struct.pack("<4f", 0.2, 0.2, 0.2, 1.0)
    for x, y, w, h in ([16, 16, 96, 4], [16, 16, 4, 96], [60, 30, 4, 80]):
        sketch.setPixelData(QByteArray(line * (w * h)), x, y, w, h)
    doc.refreshProjection()
    doc.waitForDone()
    yield ctx.activate(doc, sketch)
    ctx.data["control_added"] = bool(ctx.controller().add_active_layer_as_control("scribble"))
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    jobs_before = len(rec.jobs)
    layers = yield from generate_apply(ctx, doc)
    job = rec.jobs[jobs_before]
    control = job.get("control_0", b"")
    raw = bytes(sketch.pixelData(0, 0, 128, 128))
    krita_view = to_srgb8(raw, 128, 128, space_of(sketch))
    ctx.data["mode"] = job["params"]["mode"]
    ctx.data["control_is_krita_conversion"] = control == krita_view
    ctx.data["control_line_bgra"] = list(control[(20 * 128 + 60) * 4 : (20 * 128 + 60) * 4 + 4])
    ctx.data["image_grey"] = list(job.get("image", b"")[:4])
    ctx.data["layer_spaces"] = [list(space_of(n)) for n in layers]
    ctx.data["doc_space"] = list(space_of(doc))
    # Live painting in the same linear-float document: the frame is made from Krita's sRGB
    # view, the [Live] layer and the applied frame are in the document's colour space.
    ctl = ctx.controller()
    settings(ctx, strength=0.5)
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    ctx.trigger(TOGGLE_LIVE)
    yield Wait("a live frame", lambda: _live_frames(ctl) > 0 or not ctl.live.running, 240)
    ctx.data["live_error"] = ctx.last_error()
    live = probes.find_nodes(doc, "[Live]")
    ctx.data["live_layer_spaces"] = [list(space_of(n)) for n in live]
    if ctl.live.running:
        ctx.trigger(APPLY)
        yield sleep(0.8)
        doc.waitForDone()
        applied = [n for n in new_layers(doc, known) if not n.name().startswith("[Live]")]
        ctx.data["live_applied_spaces"] = [list(space_of(n)) for n in applied]
        ctx.trigger(TOGGLE_LIVE)
        yield sleep(0.5)
    ctx.close_all()
    yield sleep(0.3)


def colour_txt2img(ctx: Context):
    """An empty canvas in other colour spaces: txt2img, the layer in the document's space."""
    rec = recorder(ctx)
    settings(ctx, strength=1.0, batch=1)
    out = ctx.data.setdefault("documents", {})
    for model, depth in (("GRAYA", "U16"), ("CMYKA", "U8"), ("RGBA", "F32")):
        doc = open_document(ctx, 64, f"txt2img-{model}-{depth}", model, depth)
        yield sleep(0.3)
        jobs_before = len(rec.jobs)
        layers = yield from generate_apply(ctx, doc)
        out[f"{model}/{depth}"] = {
            "mode": rec.jobs[jobs_before]["params"]["mode"],
            "doc_space": list(space_of(doc)),
            "layer_spaces": [list(space_of(n)) for n in layers],
            "layer_bounds": [_bounds(n) for n in layers],
        }
        ctx.close_all()
        yield sleep(0.3)


# 5. Kind 2: selections at the canvas edge ------------------------------------------------


def edge_feather(ctx: Context):
    """1024², select (0,300,400,400), Feather 64, strength 60 %: clipped, refine at 60 %."""
    rec = recorder(ctx)
    settings(ctx, strength=0.6, batch=1)
    doc = ctx.new_document(1024, 1024, "edge-feather", fill=gradient)
    selection = feathered(doc, [0, 300, 400, 400], 64)
    ctx.data["krita_bounds"] = [selection.x(), selection.y(), selection.width(), selection.height()]
    yield sleep(0.3)
    ctx.data["mode_label"] = ctx.controller().mode_preview()
    before = bytes(doc.pixelData(0, 0, 1024, 1024))
    mask = bytes(selection.pixelData(0, 0, 1024, 1024))
    jobs_before = len(rec.jobs)
    layers = yield from generate_apply(ctx, doc)
    p = rec.jobs[jobs_before]["params"]
    ctx.data["params"] = {k: p[k] for k in ("mode", "x", "y", "width", "height", "strength")}
    ctx.data["layer_bounds"] = [_bounds(n) for n in layers]
    after = bytes(doc.pixelData(0, 0, 1024, 1024))
    ctx.data["changed_outside"] = changed_outside(before, after, mask, 4)
    ctx.close_all()
    yield sleep(0.3)


def _bounds(node) -> list[int]:
    b = node.bounds()
    return [b.x(), b.y(), b.width(), b.height()]


#: Selections touching each edge of a 512² document (x, y, w, h, feather).
EDGES = {
    "right": [430, 150, 82, 120, 32],
    "bottom": [150, 440, 120, 72, 32],
    "top_left": [0, 0, 90, 90, 24],
    "bottom_right": [440, 440, 72, 72, 24],
}


def edge_members(ctx: Context):
    """Selections at every edge: the mode follows the clipped mask; one is generated."""
    rec = recorder(ctx)
    settings(ctx, strength=0.7, batch=1)
    out = ctx.data.setdefault("edges", {})
    doc = ctx.new_document(512, 512, "edges", fill=gradient)
    for name, (x, y, w, h, feather) in EDGES.items():
        selection = feathered(doc, [x, y, w, h], feather)
        yield sleep(0.2)
        out[name] = {
            "krita_bounds": [selection.x(), selection.y(), selection.width(), selection.height()],
            "mode_label": ctx.controller().mode_preview(),
        }
    # Generate the bottom-right one (bounds past two edges).
    jobs_before = len(rec.jobs)
    layers = yield from generate_apply(ctx, doc)
    p = rec.jobs[jobs_before]["params"]
    ctx.data["params"] = {k: p[k] for k in ("mode", "x", "y", "width", "height", "strength")}
    ctx.data["layer_bounds"] = [_bounds(n) for n in layers]
    ctx.close_all()
    yield sleep(0.3)


def edge_outside(ctx: Context):
    """A selection not on the canvas at all, and a soft one whose bounds straddle the canvas
    with nothing selected on it: refused with a sentence, nothing sent."""
    rec = recorder(ctx)
    settings(ctx, strength=1.0, batch=1)
    doc = ctx.new_document(512, 512, "outside", fill=gradient)
    cases = {}
    selection = Selection()
    selection.select(600, 600, 100, 100, 255)
    doc.setSelection(selection)
    doc.waitForDone()
    cases["off_canvas"] = selection
    width = 612
    mask = bytearray(width * 50)
    for row in range(50):
        mask[row * width : row * width + 40] = b"\x80" * 40  # x -50..-11
        mask[row * width + 572 : (row + 1) * width] = b"\x80" * 40  # x 522..561
    straddle = Selection()
    straddle.setPixelData(QByteArray(bytes(mask)), -50, 100, width, 50)
    cases["straddling"] = straddle
    out = ctx.data.setdefault("cases", {})
    for name, sel in cases.items():
        doc.setSelection(sel)
        doc.waitForDone()
        yield sleep(0.3)
        current = doc.selection()
        jobs_before = len(rec.jobs)
        nodes_before = [probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())]
        ctx.trigger(GENERATE)
        yield sleep(1.0)
        out[name] = {
            "krita_bounds": [current.x(), current.y(), current.width(), current.height()],
            "jobs_sent": len(rec.jobs) - jobs_before,
            "state": ctx.state(),
            "error": ctx.last_error(),
            "docker_texts": ctx.docker_texts(),
            "nodes_same": nodes_before
            == [probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())],
        }
    ctx.close_all()
    yield sleep(0.3)


# 6. Kind 3: a soft selection is applied once ---------------------------------------------


def _alpha_along_edge(doc, layer, y: int, x0: int, x1: int) -> list[list[int]]:
    """(x, selection value, layer alpha) along row ``y`` where the selection is soft."""
    sel = bytes(doc.selection().pixelData(x0, y, x1 - x0, 1))
    alpha = bytes(layer.pixelData(x0, y, x1 - x0, 1))[3::4]
    return [[x0 + i, v, alpha[i]] for i, v in enumerate(sel) if 0 < v < 255]


def soft_once(ctx: Context):
    """Select (362,362,300,300), Feather 40: inpaint, refine, apply all, live — alpha = v."""
    rec = recorder(ctx)
    doc = ctx.new_document(1024, 1024, "soft-once", fill=gradient)
    feathered(doc, [362, 362, 300, 300], 40)
    yield sleep(0.3)
    out = ctx.data.setdefault("modes", {})
    for mode, strength in (("inpaint", 1.0), ("refine", 0.5)):
        settings(ctx, strength=strength, batch=1)
        layers = yield from generate_apply(ctx, doc)
        out[mode] = {
            "sent_mode": rec.jobs[-1]["params"]["mode"],
            "edge": [_alpha_along_edge(doc, n, 512, 300, 440) for n in layers],
        }
    settings(ctx, strength=1.0, batch=2)
    layers = yield from generate_apply(ctx, doc, action=APPLY_ALL)
    out["apply_all"] = {"edge": [_alpha_along_edge(doc, n, 512, 300, 440) for n in layers]}
    settings(ctx, batch=1)
    # Live mode: frames are whole regions, the selection's softness is applied once, here.
    ctl = ctx.controller()
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    ctx.trigger(TOGGLE_LIVE)
    yield _live_frame_or_diagnose(ctx, ctl, doc, 120)
    ctx.data["live_error"] = ctx.last_error()
    if ctl.live.running and _live_frames(ctl) > 0:
        ctx.trigger(APPLY)
        yield sleep(0.8)
        doc.waitForDone()
        layers = [n for n in new_layers(doc, known) if not n.name().startswith("[Live]")]
        out["live"] = {"edge": [_alpha_along_edge(doc, n, 512, 300, 440) for n in layers]}
        ctx.trigger(TOGGLE_LIVE)
        yield sleep(0.5)
    ctx.close_all()
    yield sleep(0.3)
    # Outpaint: the same soft selection over a canvas that is transparent on its right half.
    settings(ctx, strength=1.0, batch=1)
    doc = ctx.new_document(1024, 1024, "soft-outpaint")
    bottom = doc.rootNode().childNodes()[0]
    bottom.setPixelData(QByteArray(gradient(512, 1024)), 0, 0, 512, 1024)
    bottom.setPixelData(QByteArray(bytes(512 * 1024 * 4)), 512, 0, 512, 1024)  # transparent
    doc.refreshProjection()
    doc.waitForDone()
    feathered(doc, [362, 362, 300, 300], 40)
    yield sleep(0.3)
    layers = yield from generate_apply(ctx, doc)
    out["outpaint"] = {
        "sent_mode": rec.jobs[-1]["params"]["mode"],
        "edge": [_alpha_along_edge(doc, n, 512, 300, 440) for n in layers],
    }
    ctx.close_all()
    yield sleep(0.3)


def _live_frame_or_diagnose(ctx: Context, ctl, doc, timeout_s: float) -> Wait:
    """A live frame shown, or live stopped; after ``timeout_s`` the loop's state is recorded
    in ``live_stuck`` (for the report) and the scenario goes on."""
    deadline = time.monotonic() + timeout_s

    def ready() -> bool:
        if _live_frames(ctl) > 0 or not ctl.live.running:
            return True
        if time.monotonic() < deadline:
            return False
        live = ctl.live
        ctx.data["live_stuck"] = {
            "frames_sent": getattr(live, "frames_sent", None),
            "in_flight": getattr(live, "_in_flight", None),
            "live_doc_is_active": getattr(live, "doc_key", None)
            == str(doc.rootNode().uniqueId().toString()),
            "documents": len(ctx.app.documents()),
            "state": ctx.state(),
        }
        return True

    return Wait("a live frame", ready, timeout_s + 30)


def _live_frames(ctl) -> int:
    return int(getattr(ctl.live, "frames_shown", 0) or 0)


# 7. Kind 9: results checked before they are placed ---------------------------------------


def wrong_sizes(ctx: Context):
    """A 2x result and one 3 px short, with and without a selection, and a short live frame:
    a clear error in the docker, nothing placed."""
    rec = recorder(ctx)
    settings(ctx, strength=1.0, batch=1)
    out = ctx.data.setdefault("cases", {})
    try:
        for name, fault, rect in (
            ("double_whole", "double", None),
            ("short_whole", "short", None),
            ("double_selection", "double", [64, 64, 96, 80]),
            ("short_selection", "short", [64, 64, 96, 80]),
        ):
            doc = ctx.new_document(192, 192, f"wrong-{name}", fill=gradient)
            if rect:
                feathered(doc, rect, 0)
            yield sleep(0.3)
            nodes = [probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())]
            pixels = bytes(doc.pixelData(0, 0, 192, 192))
            rec.fault = fault
            ctx.trigger(GENERATE)
            yield wait_settled(ctx)
            yield sleep(0.5)
            rec.fault = None
            out[name] = {
                "state": ctx.state(),
                "error": ctx.last_error(),
                "docker_texts": ctx.docker_texts(),
                "nodes_same": nodes
                == [probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())],
                "pixels_same": pixels == bytes(doc.pixelData(0, 0, 192, 192)),
            }
            ctx.close_all()
            yield sleep(0.3)
        # A live frame 3 px short.
        doc = ctx.new_document(192, 192, "wrong-live", fill=gradient)
        yield sleep(0.3)
        ctl = ctx.controller()
        rec.fault = "short"
        started = time.monotonic()
        ctx.trigger(TOGGLE_LIVE)
        yield Wait(
            "live stops", lambda: not ctl.live.running or time.monotonic() - started > 60, 90
        )
        rec.fault = None
        out["live_short"] = {
            "running": bool(ctl.live.running),
            "error": ctx.last_error(),
            "frames_shown": _live_frames(ctl),
            "live_layers": [n.name() for n in probes.find_nodes(doc, "[Live]")],
        }
        if ctl.live.running:
            ctx.trigger(TOGGLE_LIVE)
        ctx.close_all()
        yield sleep(0.3)
    finally:
        rec.fault = None


SCENARIOS = {
    "colour_models": colour_models,
    "colour_control_f32": colour_control_f32,
    "colour_txt2img": colour_txt2img,
    "edge_feather": edge_feather,
    "edge_members": edge_members,
    "edge_outside": edge_outside,
    "soft_once": soft_once,
    "wrong_sizes": wrong_sizes,
}
