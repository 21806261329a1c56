"""Issue 18 in real Krita: pick a style and generate; the lossless history survives save, close
and reopen, and an item applies again byte-exactly; a reference layer goes with the job.
Also measures what a history of 50 results costs the .kra (save, open, size)."""

from __future__ import annotations

import hashlib
import os
import time

from krita import Krita
from PyQt5.QtCore import QByteArray

from . import probes
from .context import Context, ScenarioFailed, Wait, gradient, sleep
from .flow import generate_and_apply, node_by_id

STYLE = "E2E look"
FILLER = 49  # synthetic results added to the real one: a history of 50


def _workflow(ctx: Context):
    from diffusion_layers.workflow import Workflow  # the plugin, as Krita loaded it

    return Workflow.of(ctx.controller())


def _save(doc, path: str) -> float:
    doc.setBatchmode(True)
    start = time.monotonic()
    if not doc.saveAs(path):
        raise ScenarioFailed(f"could not save {path}")
    doc.waitForDone()
    return time.monotonic() - start


def _reopen(ctx: Context, doc, path: str):
    doc.setModified(False)
    doc.close()
    yield sleep(0.5)
    start = time.monotonic()
    reopened = Krita.instance().openDocument(path)
    ctx.data["open_s"] = round(time.monotonic() - start, 3)
    ctx.app.activeWindow().addView(reopened)
    yield sleep(0.8)
    return reopened


def _noise(width: int, height: int, seed: int) -> bytes:
    """Incompressible-ish BGRA (a worst case for the PNGs in the .kra)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < width * height * 4:
        block = hashlib.sha256(block).digest()
        out += block
    out = out[: width * height * 4]
    out[3::4] = b"\xff" * (width * height)
    return bytes(out)


def style_history_reopen(ctx: Context):
    """Save the settings as a style on the server, pick it, generate, apply; then 49 more
    history entries; save, close, reopen; apply the first entry again."""
    from diffusion_layers import history
    from diffusion_layers.geometry import Rect
    from diffusion_layers.krita_adapter import KritaDocument
    from diffusion_layers.protocol import JobParams

    workflow = _workflow(ctx)
    doc = ctx.new_document(256, 192, ctx.name, fill=gradient)
    yield Wait("the server's model list", lambda: ctx.controller().connection.models, 60)
    ctx.controller().update_settings(steps=3, cfg_scale=4.0)
    ctx.data["style_saved"] = workflow.save_style(STYLE)
    yield Wait("the saved style picked", lambda: ctx.controller().settings.style == STYLE, 30)
    ctx.data["styles"] = [s.name for s in workflow.styles]
    ctx.data["style_values"] = dict(ctx.controller().settings.style_values)
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    yield from generate_and_apply(ctx, doc)
    applied = node_by_id(doc, ctx.data["new"][0]["id"])
    yield Wait("the history written", lambda: workflow.recorder.pending == 0, 60)  # off-thread
    entries = history.load(KritaDocument(doc)).entries
    ctx.data["entries_after_job"] = len(entries)
    first = entries[0]
    ctx.data["first"] = {
        "id": first.id,
        "rect": [first.x, first.y, first.width, first.height],
        "style": first.style,
        "seed": first.seed,
        "steps": first.params.get("steps"),
    }
    rect = first.rect
    applied_bytes = bytes(applied.pixelData(rect.x, rect.y, rect.width, rect.height))
    ctx.data["applied_sha1"] = hashlib.sha1(applied_bytes).hexdigest()
    # 49 more results (512 x 512 noise) to measure a 50-result history in the .kra.
    filler = JobParams(mode="txt2img", width=512, height=512, prompt="filler")
    adapter = KritaDocument(doc)
    start = time.monotonic()
    for index in range(FILLER):
        item = history.NewEntry(_noise(512, 512, index), Rect(0, 0, 512, 512), index, filler)
        history.record(adapter, [item], 256)
    ctx.data["record_49_s"] = round(time.monotonic() - start, 3)
    ctx.data["history_bytes"] = history.size(history.load(adapter))
    path = os.path.join(ctx.artifacts_dir, "history.kra")
    ctx.data["save_s"] = round(_save(doc, path), 3)
    ctx.data["kra_bytes"] = os.path.getsize(path)
    # The same document without a history, for comparison.
    bare = ctx.new_document(256, 192, ctx.name + "-bare", fill=gradient)
    bare_path = os.path.join(ctx.artifacts_dir, "bare.kra")
    ctx.data["bare_save_s"] = round(_save(bare, bare_path), 3)
    bare.setModified(False)
    bare.close()
    reopened = yield from _reopen(ctx, doc, path)
    kept = history.load(KritaDocument(reopened))
    ctx.data["reopened_entries"] = len(kept.entries)
    ctx.data["reopened_first_id"] = kept.entries[0].id if kept.entries else None
    yield ctx.activate(reopened, reopened.rootNode().childNodes()[0])
    before = probes.snapshot(reopened)
    start = time.monotonic()
    again_id = workflow.apply_again(first.id)
    ctx.data["apply_again_s"] = round(time.monotonic() - start, 3)
    ctx.data["apply_again_error"] = workflow.message
    yield sleep(0.5)
    reopened.waitForDone()
    after = probes.snapshot(reopened)
    known = {n["id"] for n in before}
    ctx.data["new_after_apply_again"] = [n["name"] for n in after if n["id"] not in known]
    if again_id:
        node = node_by_id(reopened, again_id.strip("{}").lower())
        again = bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height))
        ctx.data["again_sha1"] = hashlib.sha1(again).hexdigest()
        bounds = node.bounds()
        ctx.data["again_bounds"] = [bounds.x(), bounds.y(), bounds.width(), bounds.height()]
    ctx.data["style_deleted"] = workflow.delete_style(STYLE)
    yield sleep(0.5)
    reopened.setModified(False)


def reference_layer(ctx: Context):
    """A 'Ref' layer as a reference control (weight 0.6, from 0.1 to 0.9), then Generate."""
    doc = ctx.new_document(192, 192, ctx.name, fill=gradient)
    ref = doc.createNode("Ref", "paintlayer")
    doc.rootNode().addChildNode(ref, None)
    ref.setPixelData(QByteArray(bytes((30, 160, 220, 255)) * (96 * 96)), 48, 48, 96, 96)
    yield ctx.activate(doc, ref)
    controller = ctx.controller()
    ctx.data["control_added"] = controller.add_active_layer_as_control("reference")
    control = controller.controls.current()[0]
    control.strength, control.start, control.end = 0.6, 0.1, 0.9
    controller.controls.set([control])
    ctx.log("reference control set")
    yield ctx.activate(doc, doc.rootNode().childNodes()[0])
    ctx.log("background active; generating")
    yield sleep(0.3)
    ctx.trigger("diffusion_layers_generate")
    ctx.log(f"generate triggered: state {ctx.state()}")
    yield Wait("the job to end", lambda: ctx.state() in ("preview", "error", "idle"), 120)
    ctx.data["state"] = ctx.state()
    ctx.data["error"] = ctx.last_error()
    session = controller.session()
    params = session.params.to_dict() if session is not None and session.params else {}
    ctx.data["sent_controls"] = params.get("controls")
    if ctx.state() == "preview":
        controller.discard()
    yield sleep(0.3)
    doc.setModified(False)


SCENARIOS = {
    "style_history_reopen": style_history_reopen,
    "reference_layer": reference_layer,
}
