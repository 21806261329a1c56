"""Issue 17, plugin half: Edit by instruction (docker toggle, ``<layer:Name>`` references) and
Decompose into Layers (one group, stacking order, one undo step).

Driven against the fake Krita and the loopback v1 server (results are solid colours; mode
"layers" returns N results with ``group``/``layer_index``)."""

from __future__ import annotations

import io
import json

import krita
import pytest
from diffusion_layers import model_capabilities, protocol
from diffusion_layers.controller import Controller
from diffusion_layers.edit_request import layer_tags
from diffusion_layers.protocol import JobParams, ModelsInfo, ResultInfo
from PIL import Image
from plugin_helpers import wait_until
from test_plugin_controller import ctl, finish, new_doc, select, server  # noqa: F401
from v1_server import V1Server, result_color

KLEIN = {
    "modes": ["txt2img", "img2img", "inpaint", "edit"],
    "negative_prompt": False,
    "cfg": False,
    "edit": {"max_references": 2, "live": True},
    "layers": None,
    "defaults": {"steps": 4, "cfg_scale": 1.0},
}
LAYERED = {
    "modes": ["layers"],
    "edit": None,
    "layers": {"min": 2, "max": 8, "default": 4},
    "defaults": {"steps": 3, "cfg_scale": 4.0},
}


def models_info(*, klein: bool = True, layered: bool = True) -> ModelsInfo:
    checkpoints = [{"name": "tiny", "family": "sd15", "inpaint": False}]
    if klein:
        checkpoints.append(
            {"name": "klein", "family": "flux2_klein", "inpaint": False, "capabilities": KLEIN}
        )
    if layered:
        checkpoints.append(
            {
                "name": "layered",
                "family": "qwen_image_layered",
                "inpaint": False,
                "capabilities": LAYERED,
            }
        )
    return ModelsInfo.from_dict({"default": "tiny", "checkpoints": checkpoints})


def connected(ctl: Controller, **kinds: bool) -> None:  # noqa: F811
    ctl.connection.models = models_info(**kinds)


def add_layer(doc: krita.Document, name: str, rect: tuple[int, int, int, int], bgra: bytes):
    node = doc.createNode(name, "paintlayer")
    doc.rootNode().addChildNode(node, None)
    x, y, w, h = rect
    node.setPixelData(bgra * (w * h), x, y, w, h)
    return node


def png_pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGBA")


# -- protocol and capabilities ------------------------------------------------------------


def test_protocol_round_trips_modes_layers_and_result_group() -> None:
    assert "edit" in protocol.MODES and "layers" in protocol.MODES
    params = JobParams(mode="layers", width=64, height=48, layers=3)
    again = JobParams.from_json(params.to_json())
    assert again == params and json.loads(params.to_json())["layers"] == 3
    assert JobParams(mode="edit").to_dict()["layers"] is None
    info = ResultInfo(0, 1, 0, 0, 8, 8, "/u", "/r", group="job1", layer_index=2)
    assert ResultInfo.from_json(info.to_json()) == info
    old = ResultInfo.from_dict(
        {"index": 0, "seed": 1, "x": 0, "y": 0, "width": 8, "height": 8, "url": "u", "raw_url": "r"}
    )
    assert (old.group, old.layer_index) == (None, None)


def test_capabilities_edit_and_layers_and_who_can() -> None:
    models = models_info()
    klein = model_capabilities.for_model(models, "klein")
    assert klein.edit == model_capabilities.EditAbility(2, True) and klein.layers is None
    layered = model_capabilities.for_model(models, "layered")
    assert layered.layers == model_capabilities.LayerRange(2, 8, 4) and layered.edit is None
    old = model_capabilities.for_model(models, "tiny")  # no capabilities: an older server
    assert old.edit is None and old.layers is None and "edit" not in old.modes
    assert model_capabilities.able(models, "edit") == ["klein"]
    assert model_capabilities.able(models, "layers") == ["layered"]
    refusal = model_capabilities.ability_refusal(models, "tiny", "edit")
    assert refusal is not None and "'klein'" in refusal and "cannot edit" in refusal
    assert model_capabilities.ability_refusal(models, "klein", "edit") is None
    none = model_capabilities.ability_refusal(models_info(klein=False), "tiny", "edit")
    assert none is not None and "No checkpoint on the server can edit" in none


def test_layer_tags_come_out_of_the_prompt_in_order() -> None:
    text, names = layer_tags("put the cup from <layer:Cup> on <layer:Old Table>, warm light")
    assert names == ["Cup", "Old Table"]
    assert text == "put the cup from on, warm light"
    assert layer_tags("no tags here") == ("no tags here", [])


# -- edit ------------------------------------------------------------------------------------


def test_edit_a_selection_with_one_reference_layer_places_one_layer_like_inpaint(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(64, 48))
    add_layer(doc, "Cup", (40, 30, 10, 6), bytes([0, 0, 255, 255]))  # red (BGRA)
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt="put the cup from <layer:Cup> here")
    select(doc, 8, 8, 16, 12)
    before = [n.name() for n in doc.rootNode().childNodes()]
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    job = server.last_job()
    params = job.params
    assert params["mode"] == "edit" and params["model"] == "klein"
    assert params["prompt"] == "put the cup from here"
    assert params["controls"] == [
        {
            "type": "reference",
            "image": "control_0",
            "model": None,
            "strength": 1.0,
            "start": 0.0,
            "end": 1.0,
            "preprocess": True,
        }
    ]
    region = (params["x"], params["y"], params["width"], params["height"])
    assert region[0] <= 8 and region[1] <= 8 and region[2] > 16  # the selection + context
    assert job.parts["mask"][0] == "image/x-raw-gray8"
    ctype, png = job.parts["control_0"]
    assert ctype == "image/png"
    reference = png_pixels(png)
    assert reference.size == (10, 6)  # the whole layer, not the edited region
    assert reference.getpixel((0, 0)) == (255, 0, 0, 255)
    assert ctl.apply()
    nodes = doc.rootNode().childNodes()
    assert len(nodes) == len(before) + 1
    new = [n for n in nodes if n.name() not in before][0]
    b = new.bounds()
    assert (b.x(), b.y(), b.width(), b.height()) == (8, 8, 16, 12)  # transparent outside
    assert bytes(new.pixelData(8, 8, 1, 1)) == result_color(0)
    ctl.update_settings(edit=False)
    assert ctl.reuse_settings() and ctl.settings.edit is True  # the layer was an edit
    assert ctl.settings.prompt == "put the cup from here"


def test_edit_without_selection_sends_the_whole_canvas_and_reference_controls_after_tags(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(40, 32))
    add_layer(doc, "Cup", (2, 2, 4, 4), b"\x00\x00\xff\xff")
    add_layer(doc, "Style", (0, 0, 40, 32), b"\xff\x00\x00\xff")
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt="<layer:Cup> in the style")
    assert ctl.controls.add_active("reference")  # the active layer: "Style"
    ctl.controls.current()[0].strength = 0.5
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    job = server.last_job()
    params = job.params
    assert (params["x"], params["y"], params["width"], params["height"]) == (0, 0, 40, 32)
    assert "mask" not in job.parts and params["prompt"] == "in the style"
    assert [c["image"] for c in params["controls"]] == ["control_0", "control_1"]
    assert params["controls"][1]["strength"] == 0.5
    assert png_pixels(job.parts["control_0"][1]).size == (4, 4)  # the tag's layer first
    assert png_pixels(job.parts["control_1"][1]).getpixel((0, 0)) == (0, 0, 255, 255)


@pytest.mark.parametrize(
    ("prompt", "setup", "sentence"),
    [
        ("make it <layer:Nope>", None, "There is no layer named 'Nope'"),
        ("make it <layer:Empty>", "empty", "The reference layer 'Empty' is empty"),
        ("make it <layer:Cup>", "hidden", "The reference layer 'Cup' is hidden"),
        ("<layer:Cup> <layer:Cup2> <layer:Cup3>", None, "takes at most 2 reference images"),
    ],
)
def test_bad_references_are_a_sentence_and_nothing_is_sent(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    prompt: str,
    setup: str | None,
    sentence: str,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    for name in ("Cup", "Cup2", "Cup3"):
        add_layer(doc, name, (1, 1, 4, 4), b"\x00\x00\xff\xff")
    if setup == "empty":
        doc.rootNode().addChildNode(doc.createNode("Empty", "paintlayer"), None)
    if setup == "hidden":
        doc.nodeByName("Cup").setVisible(False)
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt=prompt)
    assert not ctl.generate()
    assert sentence in ctl.last_error
    assert server.jobs == {}


def test_edit_on_a_checkpoint_that_cannot_names_those_that_can(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.ui.docker import DockerPanel

    new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    panel = DockerPanel(ctl)
    connected(ctl)
    ctl.update_settings(model="tiny")
    assert panel.edit.isHidden()  # only for a checkpoint that can edit
    ctl.update_settings(model="klein")
    assert not panel.edit.isHidden() and not panel.edit.isChecked()
    panel.edit.click()
    assert ctl.settings.edit is True
    ctl.update_settings(model="tiny")  # still shown while on: it can be turned off
    assert not panel.edit.isHidden() and panel.edit.isChecked()
    panel.show()
    panel.refresh_mode()
    assert not panel.generate.isEnabled() and "Checkpoints that can: 'klein'" in panel.mode.text()
    assert not ctl.generate() and "Checkpoints that can: 'klein'" in ctl.last_error
    assert server.jobs == {}
    panel.edit.click()
    assert ctl.settings.edit is False and panel.edit.isHidden()
    panel.hide()


def test_layer_tags_without_edit_and_other_controls_in_edit_are_refused(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    add_layer(doc, "Lines", (1, 1, 4, 4), b"\x00\x00\x00\xff")
    connected(ctl)
    ctl.update_settings(model="klein", prompt="a cup <layer:Lines>")
    assert not ctl.generate() and "turn Edit on" in ctl.last_error
    ctl.update_settings(edit=True, prompt="a cup")
    assert ctl.controls.add_active("canny")
    assert not ctl.generate() and "only reference controls can" in ctl.last_error
    assert server.jobs == {}


# -- decompose --------------------------------------------------------------------------------


def decompose(ctl: Controller) -> None:  # noqa: F811
    assert ctl.decompose.start(), ctl.decompose.message
    wait_until(lambda: not ctl.decompose.busy, what="the decomposition to end")
    assert ctl.decompose.state == "idle", ctl.decompose.message


@pytest.mark.parametrize("reverse", [False, True])
def test_decompose_the_canvas_makes_one_group_in_stacking_order_undone_in_one_step(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    reverse: bool,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(48, 40))
    top = add_layer(doc, "Top", (0, 0, 4, 4), b"\x00\xff\x00\xff")
    background = doc.nodeByName("Background")
    doc.setActiveNode(background)
    connected(ctl)
    server.reverse_layers = reverse
    ctl.update_settings(model="tiny", layers=3)
    steps_before = len(doc.history)
    decompose(ctl)
    params = server.last_job().params
    assert params["mode"] == "layers" and params["layers"] == 3
    assert params["model"] == "layered" and params["steps"] == 3  # its own default steps
    assert (params["x"], params["y"], params["width"], params["height"]) == (0, 0, 48, 40)
    assert "mask" not in server.last_job().parts
    nodes = doc.rootNode().childNodes()
    assert [n.name() for n in nodes] == ["Background", "Decomposed (3 layers)", "Top"]
    group = nodes[1]
    assert group.type() == "grouplayer"
    assert [n.name() for n in group.childNodes()] == [
        "Layer 1 of 3",
        "Layer 2 of 3",
        "Layer 3 of 3",
    ]
    for index, layer in enumerate(group.childNodes()):  # index 0 = bottom
        assert bytes(layer.pixelData(0, 0, 1, 1)) == result_color(index)
        b = layer.bounds()
        assert (b.x(), b.y(), b.width(), b.height()) == (0, 0, 48, 40)
    assert len(doc.history) == steps_before + 1
    assert doc.undo()  # one undo step removes the whole group
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Background", "Top"]
    assert top.attached()


def test_decompose_a_selection_places_layers_at_the_offset_clipped_to_it(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(64, 64))
    connected(ctl)
    ctl.update_settings(model="layered", layers=0)  # 0: the checkpoint's default (4)
    select(doc, 20, 24, 16, 8)
    decompose(ctl)
    job = server.last_job()
    assert job.params["layers"] == 4 and "mask" in job.parts
    group = doc.nodeByName("Decomposed (4 layers)")
    assert group is not None and len(group.childNodes()) == 4
    for layer in group.childNodes():
        b = layer.bounds()
        assert (b.x(), b.y(), b.width(), b.height()) == (20, 24, 16, 8)


def test_decompose_is_greyed_out_without_a_checkpoint_and_cancel_stops_the_job(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.ui.docker import DockerPanel

    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    panel = DockerPanel(ctl)
    connected(ctl, layered=False)
    panel.decompose.refresh()
    assert not panel.decompose.run.isEnabled() and not panel.decompose.count.isEnabled()
    assert "No checkpoint on the server can decompose" in panel.decompose.count.toolTip()
    assert not ctl.decompose.start() and "Qwen-Image-Layered" in ctl.decompose.message
    connected(ctl)
    panel.decompose.refresh()
    assert panel.decompose.run.isEnabled() and panel.decompose.count.value() == 4
    panel.decompose.count.setValue(5)
    assert ctl.settings.layers == 5
    server.step_delay = 0.05
    panel.decompose.run.click()
    wait_until(lambda: server.jobs != {}, what="the job to be sent")
    job_id = server.last_job().id
    wait_until(lambda: ctl.decompose._job_id is not None, what="the job id")
    assert panel.decompose.cancel.isEnabled()
    assert ctl.cancel()  # the one Cancel (Ctrl+Alt+X) stops it
    wait_until(lambda: job_id in server.deleted, what="the job to be cancelled")
    assert ctl.decompose.state == "idle" and "cancelled" in ctl.decompose.message
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Background"]
    panel.hide()


def test_live_frames_with_edit_on_are_edits_without_layer_tags(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.geometry import Rect
    from diffusion_layers.krita_adapter import KritaCanvas
    from diffusion_layers.ui.docker import DockerPanel

    add_layer(new_doc(fake_krita, size=(32, 32)), "Cup", (20, 24, 6, 4), b"\x00\x00\xff\xff")
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt="make it <layer:Cup> blue")
    doc = KritaCanvas().active_document()
    assert doc is not None
    parts, params = ctl.live._parts(doc, Rect(0, 0, 16, 16))  # a region away from the cup
    sent = json.loads(parts[0].data)
    assert sent["edit"] is True and sent["prompt"] == "make it blue" and params.edit
    assert [(c["image"], c["model"]) for c in sent["controls"]] == [("control_0", None)]
    assert parts[2].content_type == "image/png"  # the whole layer, as an Edit job sends it
    assert png_pixels(parts[2].data).size == (6, 4)
    ctl.update_settings(edit=False)
    assert json.loads(ctl.live._parts(doc, Rect(0, 0, 32, 32))[0][0].data)["edit"] is False
    # A checkpoint that edits, but not fast enough for live: the Live button says so.
    models = models_info()
    models.checkpoints[1].capabilities = dict(KLEIN, edit={"max_references": 2, "live": False})
    ctl.connection.models = models
    panel = DockerPanel(ctl)
    ctl.update_settings(edit=True)
    assert not panel.live_toggle.isEnabled()
    assert "not fast enough for live edits" in panel.live_toggle.toolTip()


def test_the_mode_line_says_edit_on_small_and_large_canvases(
    ctl: Controller,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.ui.upscale import FULL_MODE_PIXELS, mode_sentence

    small = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    ctl.update_settings(edit=True)
    assert mode_sentence(ctl) == "Edit the whole image: the prompt is an instruction"
    select(small, 4, 4, 8, 8)
    assert mode_sentence(ctl) == "Edit the selection: the prompt is an instruction"
    big = fake_krita.createDocument(2100, 2000, "big", "RGBA", "U8", "", 72.0)
    assert 2100 * 2000 > FULL_MODE_PIXELS and fake_krita.activeDocument() is big
    assert mode_sentence(ctl) == "Edit the whole image: the prompt is an instruction"
