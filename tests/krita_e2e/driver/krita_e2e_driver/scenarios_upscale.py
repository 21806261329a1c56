"""Upscale / Refine detail on large canvases (#15), with a UI heartbeat.

A 10 ms QTimer records the gaps between its ticks while the plugin reads the canvas, waits for
the server and writes the result: the worst gap is how long Krita's UI thread was stalled.
"""

from __future__ import annotations

import time

from PyQt5.QtCore import QByteArray, QTimer

from . import probes
from .context import Context, ScenarioFailed, Wait, rect_mask, sleep

UPSCALE = "diffusion_layers_upscale"
APPLY = "diffusion_layers_apply"


class Timings:
    """The longest single call of chosen plugin functions (class attributes wrapped while a
    scenario runs), to say which call a stall of the heartbeat was."""

    def __init__(self) -> None:
        self.worst: dict[str, float] = {}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner, *names: str) -> None:
        for name in names:
            original = getattr(owner, name)

            def timed(*args, _original=original, _label=f"{owner.__name__}.{name}", **kwargs):
                began = time.monotonic()
                try:
                    return _original(*args, **kwargs)
                finally:
                    ms = round((time.monotonic() - began) * 1000, 1)
                    self.worst[_label] = max(self.worst.get(_label, 0.0), ms)

            self._undo.append((owner, name, original))
            setattr(owner, name, timed)

    def restore(self) -> dict:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        return dict(sorted(self.worst.items(), key=lambda kv: -kv[1]))


def _timings() -> Timings:
    import sys

    t = Timings()
    flow = sys.modules["diffusion_layers.upscale_flow"]
    turns = sys.modules["diffusion_layers.turns"]
    docs = sys.modules["diffusion_layers.krita_documents"]
    client = sys.modules["diffusion_layers.client"]
    controller = sys.modules["diffusion_layers.controller"]
    names = ("start", "_submit", "_hand_over", "_created", "_finished", "_write", "_shown")
    t.wrap(flow.UpscaleFlow, *names)
    t.wrap(turns.Turns, "_step")
    t.wrap(docs.KritaDocuments, "create", "layer_bounds", "source")
    t.wrap(docs.NewDocument, "write", "show")
    t.wrap(client.Client, "submit_job", "_reply_finished")
    t.wrap(controller.Controller, "_fetched", "_show", "apply", "_progress", "_finished")
    adapter = sys.modules["diffusion_layers.krita_adapter"]
    names = ("show_preview", "_insert", "_keep_active", "remove_strays", "has_node")
    t.wrap(adapter.KritaDocument, *names)
    return t


class Heartbeat:
    """Gaps between the ticks of a 10 ms timer, each labelled with the flow's phase."""

    def __init__(self, phase) -> None:
        self.phase = phase
        self.gaps: list[tuple[float, str]] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.last = time.monotonic()
        self.last_phase = ""

    def start(self) -> None:
        self.last, self.last_phase = time.monotonic(), str(self.phase())
        self.timer.start()

    def _tick(self) -> None:
        now, phase = time.monotonic(), str(self.phase())
        label = phase if phase == self.last_phase else f"{self.last_phase}>{phase}"
        self.gaps.append((round((now - self.last) * 1000, 1), label))
        self.last, self.last_phase = now, phase

    def stop(self) -> dict:
        self.timer.stop()
        worst = sorted(self.gaps, reverse=True)[:8]
        by_phase: dict[str, float] = {}
        for gap, phase in self.gaps:
            by_phase[phase] = max(by_phase.get(phase, 0.0), gap)
        return {"ticks": len(self.gaps), "worst": worst, "worst_by_phase": by_phase}


def pattern(width: int, height: int) -> bytes:
    """Opaque BGRA with structure in both directions, built from a 64-row band (fast)."""
    band = bytearray()
    for y in range(64):
        row = bytearray(width * 4)
        for x in range(width):
            row[x * 4 : x * 4 + 4] = bytes(((x * 7) % 256, (y * 4 + x // 50) % 256, 128, 255))
        band += row
    bands = bytes(band) * (height // 64 + 1)
    return bands[: width * height * 4]


def _document(ctx: Context, width: int, height: int):
    doc = ctx.app.createDocument(width, height, ctx.name, "RGBA", "U8", "", 300.0)
    ctx.app.activeWindow().addView(doc)
    ctx.app.setActiveDocument(doc)
    bottom = doc.rootNode().childNodes()[0]
    bottom.setPixelData(QByteArray(pattern(width, height)), 0, 0, width, height)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


def _flow_phase(ctx: Context):
    c = ctx.controller()
    return lambda: c.upscale.state if c.upscale.busy else c.state


def upscale_new_document(ctx: Context):
    """3000x2000 x1.5 into a new document (plain resampling): exactly 4500x3000."""
    doc = _document(ctx, 3000, 2000)
    yield sleep(0.5)
    c = ctx.controller()
    c.upscale.update(factor=1.5, target="new_document", refine=False, model="")
    heart = Heartbeat(_flow_phase(ctx))
    before = {probes.node_id(d.rootNode()) for d in ctx.app.documents()}
    timings = _timings()
    heart.start()
    started = time.monotonic()
    ctx.trigger(UPSCALE)

    def done() -> bool:
        if c.upscale.state == "failed":
            raise ScenarioFailed(f"upscale failed: {c.upscale.message}")
        return not c.upscale.busy and bool(c.upscale.new_document)

    yield Wait("the upscaled document", done, 240)
    ctx.data["seconds"] = round(time.monotonic() - started, 2)
    yield sleep(0.5)
    ctx.data["heartbeat"] = heart.stop()
    ctx.data["timings"] = timings.restore()
    made = [d for d in ctx.app.documents() if probes.node_id(d.rootNode()) not in before]
    ctx.data["new_documents"] = len(made)
    if made:
        new = made[0]
        new.waitForDone()
        layers = new.rootNode().childNodes()
        ctx.data["new"] = {
            "size": [new.width(), new.height()],
            "name": new.name(),
            "colour": [new.colorModel(), new.colorDepth()],
            "resolution": new.resolution(),
            "layers": len(layers),
            "opaque_corner": bytes(layers[0].pixelData(new.width() - 1, new.height() - 1, 1, 1))[3],
            "active": ctx.app.activeDocument() is not None
            and probes.node_id(ctx.app.activeDocument().rootNode())
            == probes.node_id(new.rootNode()),
        }
        ctx.screenshot("new-document")
    ctx.data["source_size"] = [doc.width(), doc.height()]
    ctx.data["message"] = c.upscale.message


def upscale_refine_in_place(ctx: Context):
    """A 2500x1500 selection refined in place: one layer of exactly that size and position."""
    doc = _document(ctx, 2800, 1800)
    rect = [180, 140, 2500, 1500]
    ctx.select(doc, rect_mask(rect[2], rect[3]), rect)
    yield sleep(0.5)
    c = ctx.controller()
    c.upscale.update(target="in_place", strength=0.3, tile_size=256)
    heart = Heartbeat(_flow_phase(ctx))
    before = {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}
    timings = _timings()
    heart.start()
    started = time.monotonic()
    ctx.trigger(UPSCALE)

    def preview() -> bool:
        if c.upscale.state == "failed" or c.state == "error":
            raise ScenarioFailed(f"refine failed: {c.upscale.message or c.last_error}")
        return c.state == "preview"

    yield Wait("the refined preview", preview, 600)
    ctx.data["seconds_to_preview"] = round(time.monotonic() - started, 2)
    ctx.trigger(APPLY)
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["heartbeat"] = heart.stop()
    ctx.data["timings"] = timings.restore()
    new = [n for n, _, _ in probes.walk(doc.rootNode()) if probes.node_id(n) not in before]
    new = [n for n in new if n.type() == "paintlayer"]
    ctx.data["new_layers"] = [
        {
            "name": n.name(),
            "bounds": [n.bounds().x(), n.bounds().y(), n.bounds().width(), n.bounds().height()],
        }  # fmt: skip
        for n in new
    ]
    ctx.data["selection"] = rect
    ctx.data["state_after"] = c.state
    ctx.data["error"] = c.last_error
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["after_undo"] = [probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())]
    ctx.data["new_ids"] = [probes.node_id(n) for n in new]


SCENARIOS = {
    "upscale_new_document": upscale_new_document,
    "upscale_refine_in_place": upscale_refine_in_place,
}


def large_read_write(ctx: Context):
    """The plugin's own strips on a 6000x4000 canvas (no server): the whole canvas read through
    the adapter, then written into a new 6000x4000 document, with the heartbeat running."""
    import sys

    turns = sys.modules["diffusion_layers.turns"]
    adapter = sys.modules["diffusion_layers.krita_adapter"]
    geometry = sys.modules["diffusion_layers.geometry"]
    doc = _document(ctx, 6000, 4000)
    yield sleep(0.5)
    canvas = adapter.KritaCanvas()
    source = canvas.active_document()
    rect = geometry.Rect(0, 0, 6000, 4000)
    phase = ["reading"]
    heart = Heartbeat(lambda: phase[0])
    out: list[bytes] = []
    finished: list[str] = []
    heart.start()
    began = time.monotonic()
    reader = turns.Turns(  # kept referenced: a dropped Turns stops with its timer
        turns.read_strips(source.read_pixels, rect, out), lambda: finished.append("read"), print
    ).start()
    yield Wait("the canvas read", lambda: finished, 120)
    ctx.data["read_s"] = round(time.monotonic() - began, 2)
    data = b"".join(out)
    out.clear()
    phase[0] = "creating"
    info = canvas.documents().source(source.key)
    target = canvas.documents().create(6000, 4000, "large copy", info)
    phase[0] = "writing"
    began = time.monotonic()
    writer = turns.Turns(
        turns.write_strips(target.write, data, rect), lambda: finished.append("write"), print
    ).start()
    yield Wait("the copy written", lambda: len(finished) == 2, 120)
    ctx.data["write_s"] = round(time.monotonic() - began, 2)
    ctx.data["errors"] = [reader.running, writer.running]
    phase[0] = "showing"
    target.show()
    phase[0] = "idle"
    yield sleep(1.0)
    ctx.data["heartbeat"] = heart.stop()
    ctx.data["bytes"] = len(data)
    new = ctx.app.activeDocument()
    ctx.data["same_corner"] = bytes(
        new.rootNode().childNodes()[0].pixelData(5999, 3999, 1, 1)
    ) == bytes(doc.pixelData(5999, 3999, 1, 1))


SCENARIOS["large_read_write"] = large_read_write
