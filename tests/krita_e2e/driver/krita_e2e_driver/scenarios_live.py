"""Live painting in real Krita: toggle live, paint strokes through the API, watch the ``[Live]``
layer follow, apply, undo, stop. Undo steps are counted in Krita's History docker (its list
holds one row per undo command plus the empty state)."""

from __future__ import annotations

from PyQt5.QtCore import QByteArray
from PyQt5.QtWidgets import QAbstractItemView

from . import probes
from .context import Context, ScenarioFailed, Wait, gradient, sleep

LIVE_PREFIX = "[Live]"
TOGGLE = "diffusion_layers_toggle_live"
APPLY = "diffusion_layers_apply"


def undo_count(ctx: Context) -> int | None:
    """Rows in the History docker's undo list (1 = nothing to undo), or None without it."""
    for dock in ctx.app.dockers():
        if dock.objectName() == "History":
            dock.show()
            for view in dock.findChildren(QAbstractItemView):
                if view.model() is not None:
                    return int(view.model().rowCount())
    return None


def live_layer(doc):
    found = probes.find_nodes(doc, LIVE_PREFIX)
    return found[0] if found else None


def live_sha1(doc) -> str | None:
    node = live_layer(doc)
    if node is None:
        return None
    return probes.pixel_stats(probes.node_pixels(node, [0, 0, doc.width(), doc.height()]),
                              doc.width(), doc.height())["sha1"]  # fmt: skip


def frames_shown(ctx: Context) -> int:
    live = getattr(ctx.controller(), "live", None)
    return int(getattr(live, "frames_shown", 0) or 0)


def wait_frame(ctx: Context, doc, after: int, timeout_s: float = 180) -> Wait:
    """A frame newer than ``after`` is on the canvas (fails fast when live mode stopped)."""

    def ready() -> bool:
        live = getattr(ctx.controller(), "live", None)
        if live is not None and not live.running:
            raise ScenarioFailed(f"live mode stopped: {ctx.last_error()!r}")
        return frames_shown(ctx) > after and live_layer(doc) is not None

    return Wait(f"a live frame after #{after}", ready, timeout_s)


def paint_stroke(doc, node, rect: list[int]) -> None:
    x, y, w, h = rect
    node.setPixelData(QByteArray(bytes((20, 20, 20, 255)) * (w * h)), x, y, w, h)
    doc.refreshProjection()


def live_paint(ctx: Context):
    data = ctx.data
    doc = ctx.new_document(256, 256, ctx.name, fill=gradient)
    sketch = ctx.add_paint_layer(doc, "Sketch", [40, 40, 16, 16], (0, 0, 0, 255))
    yield ctx.activate(doc, sketch)
    yield sleep(0.3)
    data["undo_start"] = undo_count(ctx)
    before = probes.snapshot(doc)
    full = [0, 0, doc.width(), doc.height()]
    canvas_sha1 = probes.pixel_stats(probes.node_pixels(doc, full), full[2], full[3])["sha1"]
    # 1. Live on: the first frame appears in the [Live] layer.
    ctx.trigger(TOGGLE)
    yield wait_frame(ctx, doc, 0)
    yield sleep(0.3)
    data["undo_live_on"] = undo_count(ctx)
    data["sha1_first"] = live_sha1(doc)
    data["live_locked"] = bool(live_layer(doc).locked())
    # What a frame is made from: the canvas as if the live layer were not there.
    from diffusion_layers.geometry import Rect
    from diffusion_layers.krita_adapter import KritaDocument

    sent = KritaDocument(doc).read_pixels_without_live(Rect(*full))
    shown = probes.node_pixels(doc, full)
    data["read_without_live_is_canvas"] = probes.pixel_stats(sent, *full[2:])["sha1"] == canvas_sha1
    data["projection_shows_live"] = probes.pixel_stats(shown, *full[2:])["sha1"] != canvas_sha1
    data["live_visible_after_read"] = bool(live_layer(doc).visible())
    active = doc.activeNode()
    data["active_after_live_on"] = None if active is None else active.name()
    # 2. Strokes through the API: a new frame follows each one.
    shas = []
    for rect in ([60, 100, 120, 10], [100, 60, 10, 120]):
        shown = frames_shown(ctx)
        paint_stroke(doc, sketch, rect)
        yield wait_frame(ctx, doc, shown)
        yield sleep(0.2)
        shas.append(live_sha1(doc))
    data["sha1_after_strokes"] = shas
    data["frames_shown"] = frames_shown(ctx)
    data["undo_after_frames"] = undo_count(ctx)
    # 3. Apply: the current frame becomes a real layer.
    ctx.trigger(APPLY)
    yield sleep(0.5)
    doc.waitForDone()
    after = probes.snapshot(doc)
    known = {node["id"] for node in before}
    data["new_after_apply"] = [n for n in after if n["id"] not in known]
    data["undo_after_apply"] = undo_count(ctx)
    data["state_after_apply"] = ctx.state()
    # 4. One undo removes exactly the applied layer; the live layer stays.
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    doc.waitForDone()
    data["after_undo"] = probes.snapshot(doc)
    # 5. Live off: the live layer goes.
    ctx.trigger(TOGGLE)
    yield sleep(0.5)
    data["after_stop"] = probes.snapshot(doc)
    data["last_error"] = ctx.last_error()


SCENARIOS = {"live_paint": live_paint}
