"""QA4 scenarios: large results landing in strips, undo after replaced previews, the backend
stopped mid-job, the artist's active layer deleted as a result appears, odd documents.

Every case records what it saw and never raises on the plugin's behaviour; the pytest side
(test_krita_qa4.py) asserts. A 1 ms QTimer ("Poller") watches the controller and the layer
tree from the moment a result's pixels arrive, so actions can be fired *while* a large result
is still landing (state 'generating', the preview not yet in the tree).
"""

from __future__ import annotations

import hashlib
import time
from array import array

from PyQt5.QtCore import QTimer

from . import probes
from .context import PREVIEW_PREFIX, Context, Wait, sleep
from .scenarios_colour import feathered, recorder, space_of, to_srgb8
from .scenarios_qa3 import _focus

GENERATE = "diffusion_layers_generate"
CANCEL = "diffusion_layers_cancel"
APPLY = "diffusion_layers_apply"
APPLY_ALL = "diffusion_layers_apply_all"

BIG = (2600, 1800)
SEL = [300, 200, 2000, 1400]


# 1. Documents ------------------------------------------------------------------------------


def _rows_bgra(w: int, period: int = 64) -> list[bytes]:
    rows = []
    for r in range(period):
        row = bytearray(w * 4)
        for x in range(w):
            row[4 * x : 4 * x + 4] = bytes(((x * 7 + r * 3) & 255, (x // 5 + r * 4) & 255,
                                            ((x * x) // 97 + r) & 255, 255))  # fmt: skip
        rows.append(bytes(row))
    return rows


def _rows(w: int, model: str, depth: str) -> list[bytes]:
    rows = _rows_bgra(w)
    if model == "RGBA" and depth == "U8":
        return rows
    if model == "RGBA" and depth == "U16":
        return [array("H", (v * 257 for v in row)).tobytes() for row in rows]
    if model == "GRAYA" and depth == "U8":
        return [bytes(b for i in range(0, len(row), 4) for b in (row[i + 1], 255)) for row in rows]
    raise ValueError(model + depth)


def _doc(ctx: Context, w: int, h: int, name: str, model="RGBA", depth="U8", sketch=True):
    doc = ctx.app.createDocument(w, h, name, model, depth, "", 72.0)
    ctx.app.activeWindow().addView(doc)
    ctx.app.setActiveDocument(doc)
    rows = _rows(w, model, depth)
    data = b"".join(rows[y % len(rows)] for y in range(h))
    from PyQt5.QtCore import QByteArray

    bottom = doc.rootNode().childNodes()[0]
    bottom.setPixelData(QByteArray(data), 0, 0, w, h)
    if sketch:  # the artist's own layer, active: a small opaque square copied from the bottom
        node = doc.createNode("Sketch", "paintlayer")
        doc.rootNode().addChildNode(node, None)
        sw, sh = min(40, w), min(40, h)
        node.setPixelData(bottom.pixelData(0, 0, sw, sh), 0, 0, sw, sh)
        doc.setActiveNode(node)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


def _close(doc, settle_s: float = 0.5):
    yield sleep(settle_s)
    try:
        doc.waitForDone()
        doc.setBatchmode(True)
        doc.setModified(False)
        doc.close()
    except Exception:  # noqa: BLE001 - already closed by the scenario
        pass
    yield sleep(0.5)


def _hash(node, doc) -> str:
    return hashlib.sha1(bytes(node.pixelData(0, 0, doc.width(), doc.height()))).hexdigest()


def _tree(doc) -> list[dict]:
    out = []
    for node, parent, _ in probes.walk(doc.rootNode()):
        b = node.bounds()
        out.append({"name": node.name(), "type": node.type(), "id": probes.node_id(node),
                    "parent": None if parent == doc.rootNode() else parent.name(),
                    "locked": bool(node.locked()),
                    "bounds": [b.x(), b.y(), b.width(), b.height()],
                    "space": list(space_of(node)) if node.type() == "paintlayer" else None})  # fmt: skip
    return out


def _previews(doc) -> list[str]:
    try:
        return [n.name() for n in probes.find_nodes(doc, PREVIEW_PREFIX)]
    except Exception:  # noqa: BLE001 - a closed document
        return ["<closed>"]


def _status(ctx: Context, doc, **extra) -> dict:
    active = doc.activeNode()
    entry = {"state": ctx.state(), "error": ctx.last_error(), "layers": _tree(doc),
             "previews": _previews(doc), "active": active.name() if active else None,
             "doc_size": [doc.width(), doc.height()]}  # fmt: skip
    entry.update(extra)
    return entry


def _ended(ctx: Context, timeout_s: float = 300) -> Wait:
    started = time.monotonic()
    return Wait("plugin settled", lambda: ctx.state() in ("preview", "error", "idle")
                and time.monotonic() - started > 0.3, timeout_s)  # fmt: skip


def _generate(ctx: Context):
    ctx.trigger(GENERATE)
    yield sleep(0.3)
    yield _ended(ctx)
    yield sleep(0.4)


def _paint_new(doc, known: set) -> list:
    return [n for n, _, _ in probes.walk(doc.rootNode())
            if probes.node_id(n) not in known and n.type() == "paintlayer"]  # fmt: skip


# 2. Watching a result land --------------------------------------------------------------


class Poller:
    """A 1 ms timer that samples the plugin from the moment a result's pixels arrive, and
    fires ``action`` at the chosen moment: "landing" (first tick after the pixels arrived,
    while still generating), "joined" (first tick with a preview in the tree), "preview"
    (first tick with state 'preview') plus ``delay_s``."""

    def __init__(self, ctx: Context, doc, when: str = "", action=None, delay_s: float = 0.0):
        self.ctx, self.doc, self.when, self.action, self.delay_s = ctx, doc, when, action, delay_s
        self.arrived: float | None = None
        self.samples: list[list] = []
        self.fired: dict | None = None
        self._due: float | None = None
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(1)
        self.timer.timeout.connect(self._tick)
        client = ctx.controller().client
        recorder(ctx)  # the recorder wraps first; we wrap on top of it, once
        if not hasattr(client, "_qa4_hooks"):
            client._qa4_hooks = []
            inner = client.fetch_raw

            def fetch(url, on_ok, on_error, _hooks=client._qa4_hooks):
                def ok(data, width, height):
                    on_ok(data, width, height)
                    for hook in list(_hooks):
                        hook(width, height)

                return inner(url, ok, on_error)

            client.fetch_raw = fetch
        self._hooks = client._qa4_hooks
        self._hooks.append(self._arrived)

    def _arrived(self, width: int, height: int) -> None:
        if self.arrived is None:
            self.arrived = time.monotonic()
            self.size = [width, height]
            self.timer.start()

    def ms(self) -> float:
        return round((time.monotonic() - (self.arrived or time.monotonic())) * 1000, 1)

    def _tick(self) -> None:
        state = self.ctx.state()
        previews = _previews(self.doc)
        seen = (state, tuple(previews))
        if seen != self._last:
            self._last = seen
            self.samples.append([self.ms(), state, previews])
        if self.action is None or self.fired is not None:
            return
        now = time.monotonic()
        ready = {"landing": True, "joined": bool(previews) and previews != ["<closed>"],
                 "preview": state == "preview"}.get(self.when, False)  # fmt: skip
        if ready and self._due is None:
            self._due = now + self.delay_s
        if self._due is not None and now >= self._due:
            self.fired = {"ms": self.ms(), "state": state, "previews": previews}
            try:
                self.action()
            except Exception as exc:  # noqa: BLE001
                self.fired["raised"] = repr(exc)

    def stop(self) -> dict:
        self.timer.stop()
        if self._arrived in self._hooks:
            self._hooks.remove(self._arrived)
        return {"arrived": self.arrived is not None, "size": getattr(self, "size", None),
                "samples": self.samples[:40], "fired": self.fired}  # fmt: skip


# 3. Comparing what the preview shows with what the backend returned -------------------------


def _compare(ctx: Context, doc, node, grey: bool = False) -> dict:
    """Three 24x24 patches inside the selection: the preview's pixels (as sRGB8 BGRA, converted
    by Krita) against the result's BGRA8 pixels at the same canvas position."""
    results = getattr(ctx.controller(), "results", None) or []
    if not results:
        return {"error": "no results"}
    res = results[ctx.controller().selected_index or 0]
    rx, ry, rw, rh = res.rect.x, res.rect.y, res.rect.width, res.rect.height
    out = {"result_rect": [rx, ry, rw, rh], "result_bytes": len(res.pixels), "patches": []}
    space = space_of(node)
    sx, sy, sw, sh = SEL
    for px, py in ((sx + 40, sy + 40), (sx + sw // 2, sy + sh // 2), (sx + sw - 70, sy + sh - 70)):
        n = 24
        raw = bytes(node.pixelData(px, py, n, n))
        shown = raw if space[:2] == ("RGBA", "U8") else to_srgb8(raw, n, n, space)
        worst, cnt, sums = 0, 0, [0, 0]
        for j in range(n):
            for i in range(n):
                cx, cy = px + i - rx, py + j - ry
                if not (0 <= cx < rw and 0 <= cy < rh):
                    continue
                b, g, r, a = shown[(j * n + i) * 4 : (j * n + i) * 4 + 4]
                if a != 255:
                    continue
                o = (cy * rw + cx) * 4
                rb, rg, rr = res.pixels[o], res.pixels[o + 1], res.pixels[o + 2]
                if grey:
                    want = [round(0.299 * rr + 0.587 * rg + 0.114 * rb)] * 3
                else:
                    want = [rb, rg, rr]
                worst = max(worst, *(abs(u - v) for u, v in zip((b, g, r), want, strict=True)))
                cnt += 1
                sums[0] += r
                sums[1] += rr
        out["patches"].append({"at": [px, py], "compared": cnt, "max_diff": worst,
                               "mean_shown_r": round(sums[0] / max(cnt, 1), 1),
                               "mean_result_r": round(sums[1] / max(cnt, 1), 1)})  # fmt: skip
    return out


def _alpha_outside(doc, node) -> dict:
    """Visible preview pixels outside the selection rectangle (alpha from a BGRA8 read)."""
    space = space_of(node)
    w, h = doc.width(), doc.height()
    sx, sy, sw, sh = SEL
    bands = [
        (0, 0, w, sy),
        (0, sy + sh, w, h - sy - sh),
        (0, sy, sx, sh),
        (sx + sw, sy, w - sx - sw, sh),
    ]
    visible = 0
    for x, y, bw, bh in bands:
        if bw <= 0 or bh <= 0:
            continue
        raw = bytes(node.pixelData(x, y, bw, bh))
        step = len(raw) // (bw * bh)
        alpha_at = step - (2 if space[1] == "U16" else 1)
        visible += sum(1 for i in range(alpha_at, len(raw), step) if raw[i])
    inside = bytes(node.pixelData(sx, sy, sw, 1))
    return {"visible_outside": visible, "first_row_bytes": len(inside)}


# 4. Scenarios ------------------------------------------------------------------------------


def _large_case(ctx: Context, model: str, depth: str, label: str):
    ctl = ctx.controller()
    ctl.update_settings(strength=0.5, batch=1, steps=2)
    doc = _doc(ctx, *BIG, f"qa4-{label}", model, depth)
    feathered(doc, SEL, 0)
    yield sleep(0.5)
    bottom, sketch = doc.rootNode().childNodes()[0], doc.activeNode()
    entry = {"doc_space": list(space_of(doc)), "active_before": sketch.name() if sketch else None}
    hashes = {n.name(): _hash(n, doc) for n in (bottom, sketch)}
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    poll = Poller(ctx, doc)
    started = time.monotonic()
    yield from _generate(ctx)
    entry["seconds"] = round(time.monotonic() - started, 1)
    entry["landing"] = poll.stop()
    entry["ended"] = _status(ctx, doc)
    previews = probes.find_nodes(doc, PREVIEW_PREFIX)
    if previews:
        node = previews[0]
        b = node.bounds()
        entry["preview"] = {"bounds": [b.x(), b.y(), b.width(), b.height()],
                            "locked": bool(node.locked()), "space": list(space_of(node)),
                            "names_above_below": [n.name() for n in doc.rootNode().childNodes()]}  # fmt: skip
        entry["outside"] = _alpha_outside(doc, node)
        entry["compare"] = _compare(ctx, doc, node, grey=(model == "GRAYA"))
        ctx.screenshot(f"{label}-preview")
    entry["artist_layers_same"] = {n.name(): _hash(n, doc) == hashes[n.name()]
                                   for n in (bottom, sketch)}  # fmt: skip
    if ctx.state() == "preview":
        ctx.trigger(APPLY)
        yield sleep(1.0)
        doc.waitForDone()
        new = _paint_new(doc, known)
        entry["applied"] = _status(ctx, doc, new=[n.name() for n in new],
                                   new_locked=[bool(n.locked()) for n in new])  # fmt: skip
        ctx.trigger("edit_undo")
        yield sleep(1.0)
        doc.waitForDone()
        entry["undone"] = _status(ctx, doc, new_left=[n.name() for n in _paint_new(doc, known)])
    yield from _close(doc)
    return entry


def qa4_large(ctx: Context):
    """A 2000x1400 selection refined in a 2600x1800 RGBA/U8, RGBA/U16 and GRAYA/U8 document."""
    out = ctx.data.setdefault("cases", {})
    for model, depth in (("RGBA", "U8"), ("RGBA", "U16"), ("GRAYA", "U8")):
        label = f"{model}/{depth}"
        out[label] = yield from _large_case(ctx, model, depth, label.replace("/", "-"))


def qa4_landing(ctx: Context):
    """Cancel, close, switch document, crop - while a large result is landing in strips."""
    ctl = ctx.controller()
    ctl.update_settings(strength=0.5, batch=1, steps=2)
    out = ctx.data.setdefault("cases", {})
    for label in ("cancel", "close", "switch", "crop"):
        other = _doc(ctx, 300, 200, f"qa4-other-{label}", sketch=False) if label == "switch" \
            else None  # fmt: skip
        doc = _doc(ctx, *BIG, f"qa4-landing-{label}")
        feathered(doc, SEL, 0)
        yield sleep(0.5)
        known = [n["id"] for n in _tree(doc)]
        bottom_hash = _hash(doc.rootNode().childNodes()[0], doc)
        closed, switched = [], []

        def act(label=label, doc=doc, other=other, closed=closed, switched=switched):
            if label == "cancel":
                ctx.trigger(CANCEL)
            elif label == "close":
                doc.setBatchmode(True)
                doc.setModified(False)
                doc.close()
                closed.append(True)
            elif label == "switch":
                window = ctx.app.activeWindow()
                for view in window.views():
                    if view.document() is not None and view.document().name() == other.name():
                        window.showView(view)
                        view.setVisible()
                ctx.app.setActiveDocument(other)
                QTimer.singleShot(
                    30,
                    lambda: switched.append(
                        ctx.app.activeDocument().name() if ctx.app.activeDocument() else None
                    ),
                )
            elif label == "crop":
                doc.crop(0, 0, 2400, 1700)

        poll = Poller(ctx, doc, "landing", act)
        ctx.trigger(GENERATE)
        yield Wait("result arrived", lambda p=poll: p.fired is not None, 300)
        yield Wait("plugin left generating", lambda: ctx.state() != "generating", 60)
        yield sleep(1.5)
        entry = {"landing": poll.stop(), "state": ctx.state(), "error": ctx.last_error(),
                 "docker_texts": ctx.docker_texts(), "switched": switched}  # fmt: skip
        if closed:
            entry["docs_open"] = [d.name() for d in ctx.app.documents()]
            entry["previews_anywhere"] = {d.name(): _previews(d) for d in ctx.app.documents()}
        else:
            doc.waitForDone()
            entry["doc"] = _status(ctx, doc)
            entry["nodes_same"] = [n["id"] for n in _tree(doc)] == known
            entry["bottom_same"] = _hash(doc.rootNode().childNodes()[0], doc) == bottom_hash
        if other is not None:
            active = ctx.app.activeDocument()
            entry["active_doc"] = active.name() if active else None
            entry["mode_sentence"] = ctx.controller().mode_preview()
            entry["other"] = _status(ctx, other)
            yield _focus(ctx, doc)
            yield sleep(0.8)
            entry["back_state"] = ctx.state()
            if ctx.state() == "preview":
                ctx.trigger(APPLY)
                yield sleep(1.0)
                entry["back_applied"] = _status(ctx, doc)
            yield from _close(other)
        if label == "cancel":  # Generate works again after a cancel in the landing window
            ctl.update_settings(strength=0.5)
            yield from _generate(ctx)
            entry["again"] = _status(ctx, doc)
        if label == "crop":
            entry["apply_after_crop"] = None
            if ctx.state() == "preview":
                ctx.trigger(APPLY)
                yield sleep(0.8)
                entry["apply_after_crop"] = _status(ctx, doc)
        out[label] = entry
        if not closed:
            yield from _close(doc)
        else:
            yield sleep(1.0)


def qa4_replace_undo(ctx: Context):
    """Undo after a replaced large preview, thumbnails, Apply all, a preview dragged down."""
    ctl = ctx.controller()
    out = ctx.data.setdefault("steps", {})
    w, h = 1300, 900  # 1.17 Mpx: over one strip, so the strip path is used

    def step(doc, label, known):
        out[label] = _status(ctx, doc, new=[n.name() for n in _paint_new(doc, known)])

    def undo(doc):
        ctx.trigger("edit_undo")
        yield sleep(1.0)
        doc.waitForDone()

    # a) Generate, Generate again, Apply, one Ctrl+Z.
    ctl.update_settings(strength=0.5, batch=1, steps=2)
    doc = _doc(ctx, w, h, "qa4-rep-a")
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    yield from _generate(ctx)
    step(doc, "a: first", known)
    yield from _generate(ctx)
    step(doc, "a: second", known)
    ctx.trigger(APPLY)
    yield sleep(1.0)
    step(doc, "a: apply", known)
    yield from undo(doc)
    step(doc, "a: undo", known)
    yield from undo(doc)
    step(doc, "a: undo 2", known)
    yield from _close(doc)

    # b) batch 2: thumbnail 2, Apply, one Ctrl+Z.
    ctl.update_settings(batch=2)
    doc = _doc(ctx, w, h, "qa4-rep-b")
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    yield from _generate(ctx)
    step(doc, "b: first", known)
    ctl.show_result(1)
    yield sleep(1.5)
    step(doc, "b: thumbnail 2", known)
    ctx.trigger(APPLY)
    yield sleep(1.0)
    step(doc, "b: apply", known)
    yield from undo(doc)
    step(doc, "b: undo", known)

    # c) same document: Generate (batch 2), Apply all, Ctrl+Z, Ctrl+Z, Apply.
    yield from _generate(ctx)
    step(doc, "c: preview", known)
    ctx.trigger(APPLY_ALL)
    yield sleep(1.5)
    step(doc, "c: apply all", known)
    yield from undo(doc)
    step(doc, "c: undo 1", known)
    yield from undo(doc)
    step(doc, "c: undo 2", known)
    ctx.trigger(APPLY)
    yield sleep(1.0)
    step(doc, "c: apply", known)
    yield from _close(doc)

    # d) the artist drags the preview to the bottom, then Generate again, Apply, Ctrl+Z.
    ctl.update_settings(batch=1)
    doc = _doc(ctx, w, h, "qa4-rep-d")
    known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    yield from _generate(ctx)
    previews = probes.find_nodes(doc, PREVIEW_PREFIX)
    if previews:
        yield ctx.activate(doc, previews[0])
        for _ in range(3):
            ctx.trigger("move_layer_down")
            yield sleep(0.4)
        step(doc, "d: dragged to bottom", known)
        yield ctx.activate(doc, [n for n in doc.rootNode().childNodes() if n.name() == "Sketch"][0])
        yield from _generate(ctx)
        step(doc, "d: generate again", known)
        ctx.trigger(APPLY)
        yield sleep(1.0)
        step(doc, "d: apply", known)
        yield from undo(doc)
        step(doc, "d: undo", known)
        yield from undo(doc)
        step(doc, "d: undo 2", known)
    yield from _close(doc)


def qa4_backend_stop(ctx: Context):
    ctl = ctx.controller()
    data = ctx.data
    doc = _doc(ctx, 512, 512, "qa4-down")
    ctl.update_settings(strength=1.0, batch=1, steps=150)
    before = [n["id"] for n in _tree(doc)]
    ctx.trigger(GENERATE)
    yield sleep(2.0)
    data["generating"] = ctx.state()
    yield ctx.harness("backend_stop")
    t0 = time.monotonic()
    yield Wait("job ends", lambda: ctx.state() != "generating", 150)
    data["ended_after_s"] = round(time.monotonic() - t0, 1)
    yield sleep(0.5)
    data["after_stop"] = _status(ctx, doc, docker_texts=ctx.docker_texts())
    data["nodes_same"] = before == [n["id"] for n in _tree(doc)]
    yield ctx.harness("backend_start")
    yield sleep(2)
    ctl.update_settings(steps=2)
    yield from _generate(ctx)
    data["after_restart"] = _status(ctx, doc)
    yield from _close(doc)


def qa4_delete_active(ctx: Context):
    """The artist deletes their active layer (Sketch) as a large result appears."""
    ctl = ctx.controller()
    ctl.update_settings(strength=0.5, batch=1, steps=2)
    out = ctx.data.setdefault("cases", {})
    for when, delay in (("landing", 0.0), ("joined", 0.0), ("preview", 0.0), ("preview", 0.3)):
        label = f"{when}+{delay}"
        doc = _doc(ctx, 1300, 900, f"qa4-del-{when}")
        yield sleep(0.3)

        def act(doc=doc):
            node = doc.activeNode()
            if node is not None and node.name() == "Sketch":
                node.remove()
            else:
                raise RuntimeError(f"active is {node.name() if node else None}")

        known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
        poll = Poller(ctx, doc, when, act, delay)
        ctx.trigger(GENERATE)
        yield Wait("fired", lambda p=poll: p.fired is not None, 300)
        yield Wait("settled", lambda: ctx.state() != "generating", 60)
        yield sleep(1.0)
        entry = {"landing": poll.stop(), "ended": _status(ctx, doc)}
        if ctx.state() == "preview":
            ctx.trigger(APPLY)
            yield sleep(1.0)
            entry["applied"] = _status(ctx, doc, new=[n.name() for n in _paint_new(doc, known)])
        out[label] = entry
        yield from _close(doc)


def qa4_odd(ctx: Context):
    """4097x3 canvas; an undo/redo storm after Apply; Generate in B while A's job runs."""
    ctl = ctx.controller()
    ctl.update_settings(strength=1.0, batch=1, steps=2)
    out = ctx.data.setdefault("cases", {})
    doc = _doc(ctx, 4097, 3, "qa4-thin", sketch=False)
    yield from _generate(ctx)
    out["4097x3"] = _status(ctx, doc, mode=ctl.mode_preview())
    yield from _close(doc, 2.0)

    # undo/redo storm, keys ~80 ms apart: first a control document with no plugin layer,
    # then the same after Apply + a second preview. N (undo, redo) pairs, 4 undos then 4 redos
    # must each leave the layers as they were.
    ctl.update_settings(strength=0.5)
    for label in ("control", "plugin"):
        doc = _doc(ctx, 300, 200, f"qa4-storm-{label}")
        known = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
        if label == "control":
            ctx.add_paint_layer(doc, "Ink", [10, 10, 50, 50], (0, 0, 255, 255))
            ctx.add_paint_layer(doc, "Ink 2", [60, 10, 50, 50], (0, 255, 0, 255))
        else:
            yield from _generate(ctx)
            ctx.trigger(APPLY)
            yield sleep(0.5)
            yield from _generate(ctx)
        yield sleep(0.5)
        out[f"storm_{label}_before"] = _status(ctx, doc)
        for _ in range(8):
            ctx.trigger("edit_undo")
            yield sleep(0.08)
            ctx.trigger("edit_redo")
            yield sleep(0.08)
        yield sleep(1.0)
        out[f"storm_{label}_pairs"] = _status(ctx, doc)
        for _ in range(4):
            ctx.trigger("edit_undo")
            yield sleep(0.08)
        yield sleep(1.0)
        out[f"storm_{label}_undos"] = _status(ctx, doc)
        for _ in range(4):
            ctx.trigger("edit_redo")
            yield sleep(0.08)
        yield sleep(1.0)
        out[f"storm_{label}_redos"] = _status(ctx, doc)
        if label == "plugin":
            ctx.trigger(APPLY)
            yield sleep(1.0)
            out["storm_apply"] = _status(ctx, doc, new=[n.name() for n in _paint_new(doc, known)])
        yield from _close(doc)

    # A's large job runs; B becomes active and the artist presses Generate there.
    a = _doc(ctx, *BIG, "qa4-A")
    feathered(a, SEL, 0)
    b = _doc(ctx, 320, 240, "qa4-B")
    yield _focus(ctx, a)
    yield sleep(0.5)
    ctl.update_settings(strength=0.5, steps=20)
    ctx.trigger(GENERATE)
    yield sleep(0.5)
    out["a_generating"] = ctx.state()
    yield _focus(ctx, b)
    yield sleep(0.5)
    out["b_state_during_a"] = ctx.state()
    ctl.update_settings(steps=2)
    ctx.trigger(GENERATE)
    yield sleep(0.3)
    out["b_after_generate"] = {"state": ctx.state(), "error": ctx.last_error()}
    yield Wait("B settled", lambda: ctx.state() != "generating", 300)
    yield sleep(1.0)
    out["b_end"] = _status(ctx, b)
    yield _focus(ctx, a)
    yield Wait("A settled", lambda: ctx.state() != "generating", 300)
    yield sleep(1.0)
    out["a_end"] = _status(ctx, a)
    yield from _close(b)
    yield from _close(a)


SCENARIOS = {
    "qa4_large": qa4_large,
    "qa4_landing": qa4_landing,
    "qa4_replace_undo": qa4_replace_undo,
    "qa4_backend_stop": qa4_backend_stop,
    "qa4_delete_active": qa4_delete_active,
    "qa4_odd": qa4_odd,
}
