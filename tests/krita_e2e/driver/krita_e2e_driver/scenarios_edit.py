"""Edit by instruction and Decompose into Layers in real Krita (#17), against the real backend
with tiny FLUX.2 klein and Qwen-Image-Layered checkpoints (tests/krita_e2e/test_krita_edit.py).

* ``edit_reference``: a selection edited with one reference layer (``<layer:Cup>``): one new
  layer exactly over the selection after Apply.
* ``decompose_512``: a 512x512 canvas decomposed into 3 layers: one group of 3 paint layers
  above the active layer; one Undo removes the whole group.
"""

from __future__ import annotations

from . import probes
from .context import Context, ScenarioFailed, Wait, gradient, rect_mask, sleep

GENERATE = "diffusion_layers_generate"
APPLY = "diffusion_layers_apply"
DECOMPOSE = "diffusion_layers_decompose"
KLEIN = "tiny_flux2_klein"
LAYERED = "tiny_qwen_image_layered"


def _ids(doc) -> set:
    return {probes.node_id(n) for n, _, _ in probes.walk(doc.rootNode())}


def _models(ctx: Context):
    c = ctx.controller()
    if c is None:
        raise ScenarioFailed("the plugin's controller was not found")
    c.connect_server()
    return c, Wait("the model list", lambda: c.connection.models is not None, 60)


def _top_level(doc) -> list:
    return [n.name() for n in doc.rootNode().childNodes() if not n.type().endswith("mask")]


def edit_reference(ctx: Context):
    doc = ctx.new_document(256, 192, ctx.name, fill=gradient)
    cup = ctx.add_paint_layer(doc, "Cup", [180, 120, 40, 30], (0, 0, 255, 255))
    background = doc.rootNode().childNodes()[0]
    yield ctx.activate(doc, background)
    rect = [40, 32, 64, 48]
    ctx.select(doc, rect_mask(rect[2], rect[3]), rect)
    c, wait = _models(ctx)
    yield wait
    c.update_settings(
        model=KLEIN, edit=True, prompt="put the cup from <layer:Cup> on the table", steps=2
    )
    before = _ids(doc)
    ctx.data["selection"] = rect
    ctx.data["cup_id"] = probes.node_id(cup)
    ctx.trigger(GENERATE)

    def preview() -> bool:
        if c.state == "error":
            raise ScenarioFailed(f"edit failed: {c.last_error}")
        return c.state == "preview"

    yield Wait("the edited preview", preview, 240)
    session = c.session()
    params = session.params.to_dict() if session and session.params else {}
    ctx.data["sent"] = {
        "mode": params.get("mode"),
        "prompt": params.get("prompt"),
        "controls": params.get("controls"),
        "region": [params.get("x"), params.get("y"), params.get("width"), params.get("height")],
    }
    ctx.trigger(APPLY)
    yield sleep(0.8)
    doc.waitForDone()
    new = [n for n, _, _ in probes.walk(doc.rootNode()) if probes.node_id(n) not in before]
    new = [n for n in new if not n.type().endswith("mask")]
    ctx.data["new_layers"] = [
        {"name": n.name(), "type": n.type(), "bounds": probes.node_info(doc, n, None, 0)["bounds"]}
        for n in new
    ]
    ctx.data["error"] = c.last_error
    ctx.data["state_after"] = c.state
    ctx.screenshot("edited")
    c.update_settings(edit=False)


def decompose_512(ctx: Context):
    doc = ctx.new_document(512, 512, ctx.name, fill=gradient)
    top = ctx.add_paint_layer(doc, "Top", [0, 0, 16, 16], (0, 255, 0, 255))
    background = doc.rootNode().childNodes()[0]
    yield ctx.activate(doc, background)
    c, wait = _models(ctx)
    yield wait
    c.update_settings(model=LAYERED, layers=3, steps=2, edit=False)
    ctx.data["before"] = _top_level(doc)
    ctx.data["top_id"] = probes.node_id(top)
    active = doc.activeNode()  # Krita may not have followed activate(): recorded, not assumed
    ctx.data["active"] = None if active is None else active.name()
    ctx.trigger(DECOMPOSE)
    flow = c.decompose

    def done() -> bool:
        if flow.state == "failed":
            raise ScenarioFailed(f"decompose failed: {flow.message}")
        return not flow.busy

    yield Wait("the decomposition", done, 300)
    yield sleep(0.8)
    doc.waitForDone()
    groups = [n for n, _, _ in probes.walk(doc.rootNode()) if n.type() == "grouplayer"]
    ctx.data["after"] = _top_level(doc)
    ctx.data["groups"] = [
        {
            "name": g.name(),
            "children": [
                {
                    "name": k.name(),
                    "type": k.type(),
                    "bounds": probes.node_info(doc, k, g, 1)["bounds"],
                }
                for k in g.childNodes()
            ],
        }
        for g in groups
    ]
    ctx.data["message"] = flow.message
    ctx.screenshot("decomposed")
    ctx.trigger("edit_undo")
    yield sleep(0.8)
    doc.waitForDone()
    ctx.data["after_undo"] = _top_level(doc)
    ctx.data["groups_after_undo"] = [
        n.name() for n, _, _ in probes.walk(doc.rootNode()) if n.type() == "grouplayer"
    ]


SCENARIOS = {"edit_reference": edit_reference, "decompose_512": decompose_512}
