"""QA round 2 (artist's view of the new features): Upscale on odd documents, refine in place
with edge/soft selections and on a layer, cancel, hi-res pass sizes, inline LoRA refusal.

Each scenario records facts; tests/krita_e2e/test_krita_qa2.py asserts on them.
"""

from __future__ import annotations

import hashlib
import struct
import time

from PyQt5.QtCore import QByteArray

from . import probes
from .context import Context, ScenarioFailed, Wait, ellipse_mask, rect_mask, sleep
from .flow import generate_and_apply

UPSCALE = "diffusion_layers_upscale"
APPLY = "diffusion_layers_apply"
CANCEL = "diffusion_layers_cancel"

#: (label, width, height, model, depth, factor)
ODD_CASES = [
    ("rgba8_137", 333, 517, "RGBA", "U8", 1.37),
    ("rgba16_15", 333, 517, "RGBA", "U16", 1.5),
    ("rgbaf32_2", 301, 203, "RGBA", "F32", 2.0),
    ("graya_15", 333, 517, "GRAYA", "U8", 1.5),
    ("cmyka_2", 201, 133, "CMYKA", "U8", 2.0),
]


def _pixel(model: str, depth: str, x: int, y: int, w: int, h: int) -> bytes:
    a, b = x / max(1, w - 1), y / max(1, h - 1)
    c = ((x // 8) + (y // 8)) % 2 * 0.3
    if model == "GRAYA":
        return bytes((int(255 * (a * 0.7 + c)), 255))
    if model == "CMYKA":
        return bytes((int(255 * a), int(255 * b), int(255 * c), 0, 255))
    if depth == "U8":
        return bytes((int(255 * a), int(255 * b), int(255 * c), 255))
    if depth == "U16":
        return struct.pack("<4H", int(65535 * a), int(65535 * b), int(65535 * c), 65535)
    if depth == "F32":
        return struct.pack("<4f", a, b, c, 1.0)
    raise ScenarioFailed(f"no pattern for {model}/{depth}")


def _document(ctx: Context, width: int, height: int, name: str, model="RGBA", depth="U8"):
    doc = ctx.app.createDocument(width, height, name, model, depth, "", 72.0)
    ctx.app.activeWindow().addView(doc)
    ctx.app.setActiveDocument(doc)
    data = b"".join(
        _pixel(model, depth, x, y, width, height) for y in range(height) for x in range(width)
    )
    bottom = doc.rootNode().childNodes()[0]
    bottom.setPixelData(QByteArray(data), 0, 0, width, height)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


def _digest(doc) -> str:
    return hashlib.sha1(bytes(doc.pixelData(0, 0, doc.width(), doc.height()))).hexdigest()


def _doc_key(doc) -> str:
    return probes.node_id(doc.rootNode())


def _close(doc) -> None:
    doc.setBatchmode(True)
    doc.setModified(False)
    doc.close()


def _wait_upscale(ctx: Context, timeout_s: float = 240) -> Wait:
    c = ctx.controller()

    def done() -> bool:
        return c.upscale.state in ("failed", "idle") and not c.upscale.busy

    return Wait("upscale settled", done, timeout_s)


def qa2_upscale_odd(ctx: Context):
    """Upscale into a new document for odd sizes and colour models: exact size, same space."""
    c = ctx.controller()
    out = {}
    for label, w, h, model, depth, factor in ODD_CASES:
        doc = _document(ctx, w, h, f"qa2 {label}", model, depth)
        yield sleep(0.5)
        before_docs = {_doc_key(d) for d in ctx.app.documents()}
        digest = _digest(doc)
        c.upscale.update(factor=factor, target="new_document", refine=False, model="")
        c.upscale.new_document = ""
        ctx.trigger(UPSCALE)
        yield sleep(0.3)
        yield _wait_upscale(ctx)
        yield sleep(0.5)
        made = [d for d in ctx.app.documents() if _doc_key(d) not in before_docs]
        case = {
            "expected": [int(round(w * factor)), int(round(h * factor))],
            "state": c.upscale.state,
            "message": c.upscale.message,
            "new_documents": len(made),
            "source_untouched": _digest(doc) == digest,
            "source_colour": [doc.colorModel(), doc.colorDepth()],
        }
        if made:
            new = made[0]
            new.waitForDone()
            case["size"] = [new.width(), new.height()]
            case["colour"] = [new.colorModel(), new.colorDepth()]
            proj = new.projection(0, 0, new.width(), new.height())
            corner = proj.pixel(new.width() - 1, new.height() - 1)
            case["corner_alpha"] = (corner >> 24) & 0xFF
            mid = proj.pixel(new.width() // 2, new.height() // 2)
            src = doc.projection(0, 0, w, h).pixel(w // 2, h // 2)
            case["mid_rgb"] = [(mid >> s) & 0xFF for s in (16, 8, 0)]
            case["src_mid_rgb"] = [(src >> s) & 0xFF for s in (16, 8, 0)]
            for d in made:
                _close(d)
            yield sleep(0.5)
        out[label] = case
        ctx.app.setActiveDocument(doc)
        _close(doc)
        yield sleep(0.8)
    ctx.data["cases"] = out


def _layers(doc) -> dict:
    return {probes.node_id(n): n for n, _, _ in probes.walk(doc.rootNode())}


def _refine(ctx: Context, doc, label: str):
    """Refine in place, apply; record the new paint layers and what one undo leaves."""
    c = ctx.controller()
    before = set(_layers(doc))
    c.upscale.update(target="in_place", strength=0.3, factor=2.0, model="")
    ctx.trigger(UPSCALE)

    def preview() -> bool:
        if c.upscale.state == "failed" or c.state == "error":
            raise ScenarioFailed(f"{label}: {c.upscale.message or c.last_error}")
        return c.state == "preview"

    yield Wait(f"{label} preview", preview, 300)
    ctx.trigger(APPLY)
    yield sleep(1.0)
    doc.waitForDone()
    now = _layers(doc)
    new = [n for k, n in now.items() if k not in before and n.type() == "paintlayer"]
    rec = {
        "new_layers": [
            [n.bounds().x(), n.bounds().y(), n.bounds().width(), n.bounds().height()] for n in new
        ],
        "names": [n.name() for n in new],
        "state": c.state,
    }
    if new:
        b = new[0].bounds()
        alpha = bytes(new[0].pixelData(b.x(), b.y(), b.width(), b.height()))[3::4]
        rec["alpha_min_max"] = [min(alpha), max(alpha)] if alpha else None
    new_ids = {probes.node_id(n) for n in new}
    ctx.trigger("edit_undo")
    yield sleep(1.0)
    doc.waitForDone()
    rec["left_after_one_undo"] = len(new_ids & set(_layers(doc)))
    ctx.trigger("edit_redo")
    yield sleep(1.0)
    doc.waitForDone()
    rec["back_after_redo"] = len(new_ids & set(_layers(doc)))
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    ctx.data[label] = rec


def qa2_refine(ctx: Context):
    """Refine in place: a selection touching the canvas edge, a soft selection, a layer."""
    doc = _document(ctx, 333, 517, "qa2 refine")
    yield sleep(0.5)
    edge = [200, 400, 133, 117]  # touches the right and bottom edges
    ctx.select(doc, rect_mask(edge[2], edge[3]), edge)
    ctx.data["edge_rect"] = edge
    yield from _refine(ctx, doc, "edge")
    soft = [40, 50, 160, 120]
    ctx.select(doc, ellipse_mask(soft[2], soft[3], 20), soft)
    ctx.data["soft_rect"] = soft
    yield from _refine(ctx, doc, "soft")
    doc.setSelection(None)
    yield sleep(0.3)
    layer_rect = [61, 77, 90, 70]
    node = ctx.add_paint_layer(doc, "qa2 patch", layer_rect, (20, 200, 40, 255))
    yield ctx.activate(doc, node)
    ctx.data["layer_rect"] = layer_rect
    yield from _refine(ctx, doc, "layer")
    _close(doc)
    yield sleep(0.5)


def qa2_upscale_cancel(ctx: Context):
    """Cancel an upscale mid-job with the Cancel action: no new document, idle, a note."""
    doc = _document(ctx, 1001, 771, "qa2 cancel")
    yield sleep(0.5)
    c = ctx.controller()
    c.upscale.update(factor=2.0, target="new_document", refine=True, strength=0.5, model="")
    before_docs = {_doc_key(d) for d in ctx.app.documents()}
    ctx.trigger(UPSCALE)
    yield Wait("upscale running", lambda: c.upscale.state == "running", 60)
    yield sleep(0.5)
    ctx.data["state_before_cancel"] = c.upscale.state
    ctx.trigger(CANCEL)
    yield sleep(0.5)
    ctx.data["state_after_cancel_action"] = c.upscale.state
    if c.upscale.busy:  # the Cancel action did not reach the upscale: the flow's own cancel
        ctx.data["action_missed"] = True
        c.upscale.cancel()
    yield sleep(8.0)
    ctx.data["state"] = c.upscale.state
    ctx.data["message"] = c.upscale.message
    ctx.data["new_documents"] = len(
        [d for d in ctx.app.documents() if _doc_key(d) not in before_docs]
    )
    for d in ctx.app.documents():
        if _doc_key(d) not in before_docs:
            _close(d)
    # a second upscale afterwards still works
    c.upscale.update(factor=1.5, refine=False)
    ctx.app.setActiveDocument(doc)
    ctx.trigger(UPSCALE)
    yield sleep(0.3)
    yield _wait_upscale(ctx)
    ctx.data["again_state"] = c.upscale.state
    ctx.data["again_message"] = c.upscale.message
    _close(doc)
    yield sleep(0.5)


def qa2_upscale_close_source(ctx: Context):
    """Close the source document while its upscale runs: no crash, a clear state, no junk."""
    doc = _document(ctx, 801, 601, "qa2 close")
    other = _document(ctx, 64, 64, "qa2 other")
    ctx.app.setActiveDocument(doc)
    yield sleep(0.5)
    c = ctx.controller()
    c.upscale.update(factor=2.0, target="new_document", refine=True, strength=0.5, model="")
    keys = {_doc_key(d) for d in ctx.app.documents()}
    ctx.trigger(UPSCALE)
    yield Wait("upscale running", lambda: c.upscale.state in ("running", "failed"), 60)
    _close(doc)
    ctx.app.setActiveDocument(other)
    yield _wait_upscale(ctx, 300)
    yield sleep(1.0)
    ctx.data["state"] = c.upscale.state
    ctx.data["message"] = c.upscale.message
    ctx.data["new_documents"] = [
        [d.width(), d.height()] for d in ctx.app.documents() if _doc_key(d) not in keys
    ]
    ctx.data["other_layers"] = len(other.rootNode().childNodes())
    ctx.close_all()
    yield sleep(0.5)


def qa2_hires(ctx: Context):
    """A 1600x1200 canvas, strength 0.6 (img2img) and an inpaint selection: exact sizes."""
    doc = _document(ctx, 1600, 1200, "qa2 hires")
    yield sleep(0.5)
    c = ctx.controller()
    c.update_settings(strength=0.6)
    started = time.monotonic()
    yield from generate_and_apply(ctx, doc)
    ctx.data["img2img_s"] = round(time.monotonic() - started, 1)
    new = [n for n in ctx.data.get("new", []) if n.get("type") == "paintlayer"]
    ctx.data["img2img_layers"] = new
    sel = [300, 200, 900, 700]
    ctx.select(doc, rect_mask(sel[2], sel[3]), sel)
    ctx.data["sel"] = sel
    yield from generate_and_apply(ctx, doc)
    ctx.data["inpaint_layers"] = [
        n for n in ctx.data.get("new", []) if n.get("type") == "paintlayer"
    ]
    ctx.data["error"] = ctx.last_error()
    _close(doc)
    yield sleep(0.5)


def qa2_lora_unknown(ctx: Context):
    """`<lora:unknown:0.8>` in the prompt: refused with a sentence, no layer, no job."""
    doc = _document(ctx, 96, 96, "qa2 lora")
    yield sleep(0.5)
    c = ctx.controller()
    c.update_settings(prompt="a cat <lora:unknown:0.8>", strength=1.0)
    before = set(_layers(doc))
    ctx.trigger("diffusion_layers_generate")
    yield sleep(3.0)
    ctx.data["state"] = c.state
    ctx.data["error"] = c.last_error
    ctx.data["new_layers"] = len(set(_layers(doc)) - before)
    ctx.data["docker_texts"] = [t for t in ctx.docker_texts() if "lora" in t.lower()]
    c.update_settings(prompt="a cat (red:1.2), {red|blue}\n# a comment line")
    ctx.trigger("diffusion_layers_generate")

    def settled() -> bool:
        return c.state == "error" or bool(probes.find_nodes(doc, "[Preview]"))

    yield Wait("syntax preview", settled, 120)
    ctx.data["syntax_state"] = c.state
    ctx.data["syntax_error"] = c.last_error
    _close(doc)
    yield sleep(0.5)


SCENARIOS = {
    "qa2_upscale_odd": qa2_upscale_odd,
    "qa2_refine": qa2_refine,
    "qa2_upscale_cancel": qa2_upscale_cancel,
    "qa2_upscale_close_source": qa2_upscale_close_source,
    "qa2_hires": qa2_hires,
    "qa2_lora_unknown": qa2_lora_unknown,
}
