"""The controller driving fake Krita documents end to end against a tiny v1 server on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import krita
import pytest
from diffusion_layers.client import Client
from diffusion_layers.controller import Controller
from diffusion_layers.krita_adapter import KritaCanvas, KritaSettingsStore
from diffusion_layers.layer_params import ANNOTATION_TYPE
from diffusion_layers.protocol import JobParams
from plugin_helpers import pump, wait_until
from v1_server import V1Server, result_color

GROUP = "diffusion_layers"


@pytest.fixture
def server() -> Iterator[V1Server]:
    srv = V1Server().start()
    yield srv
    srv.stop()


def make_controller(app: krita.Krita, url: str, **settings: str) -> Controller:
    app.writeSetting(GROUP, "server_url", url)
    app.writeSetting(GROUP, "steps", "2")
    for key, value in settings.items():
        app.writeSetting(GROUP, key, value)
    store = KritaSettingsStore()
    return Controller(KritaCanvas(), Client(url), store)


@pytest.fixture
def ctl(fake_krita: krita.Krita, server: V1Server) -> Controller:
    return make_controller(fake_krita, server.url, prompt="a red fox", seed="42")


def new_doc(
    app: krita.Krita,
    fill: bytes | None = None,
    size: tuple[int, int] = (64, 64),
    depth: str = "U8",
    model: str = "RGBA",
) -> krita.Document:
    doc = app.createDocument(size[0], size[1], "test", model, depth, "", 72.0)
    if fill is not None:
        node = doc.nodeByName("Background")
        assert node is not None
        node.setPixelData(fill * (size[0] * size[1]), 0, 0, size[0], size[1])
    return doc


def select(doc: krita.Document, x: int, y: int, w: int, h: int) -> None:
    sel = krita.Selection()
    sel.setPixelData(b"\xff" * (w * h), x, y, w, h)
    doc.setSelection(sel)


def names(doc: krita.Document):
    return [n.name() for n in doc.all_nodes()]


def pixel(node: krita.Node, x: int, y: int) -> bytes:
    return bytes(node.pixelData(x, y, 1, 1))


def finish(ctl: Controller, state: str = "preview") -> None:
    wait_until(lambda: ctl.state not in ("generating",), what="the job to end")
    assert ctl.state == state, ctl.last_error


def test_txt2img_preview_then_apply_makes_one_layer(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    assert ctl.mode_preview().startswith("Generate")
    assert ctl.generate()
    assert ctl.state == "generating"
    finish(ctl)
    job = server.last_job()
    assert job.params["mode"] == "txt2img" and set(job.parts) == {"params"}
    assert (job.params["width"], job.params["height"], job.params["seed"]) == (64, 64, 42)
    preview = [n for n in doc.all_nodes() if n.name().startswith("[Preview]")]
    assert len(preview) == 1 and preview[0].locked()
    assert pixel(preview[0], 10, 10) == result_color(0)
    assert ctl.used_seed == 42
    before = len(doc.undo_steps)
    layer_id = ctl.apply()
    assert layer_id == str(preview[0].uniqueId().toString())  # the preview became the layer
    assert ctl.state == "idle"
    assert names(doc) == ["Background", "a red fox #42"] and not preview[0].locked()
    assert doc.undo_steps[before:] == []  # adding the preview was its one undo step
    layer = doc.nodeByName("a red fox #42")
    assert pixel(layer, 63, 63) == result_color(0)
    stored = json.loads(bytes(doc.annotation(ANNOTATION_TYPE)))
    assert stored[layer_id]["seed"] == 42 and stored[layer_id]["params"]["prompt"] == "a red fox"


def test_inpaint_sends_only_the_region_and_keeps_outside_transparent(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([1, 2, 3, 255]), size=(128, 96))
    select(doc, 48, 40, 16, 16)
    assert ctl.mode_preview().startswith("Inpaint")
    assert ctl.generate()
    finish(ctl)
    job = server.last_job()
    p = job.params
    assert p["mode"] == "inpaint"
    assert (p["x"], p["y"], p["width"], p["height"]) == (
        32,
        24,
        48,
        48,
    )  # selection + 16 px context
    assert set(job.parts) == {"params", "image", "mask"}
    assert job.parts["image"][1] == bytes([1, 2, 3, 255]) * (48 * 48)
    mask = job.parts["mask"][1]
    assert mask[0] == 0 and mask[16 * 48 + 16] == 255
    ctl.apply()
    layer = doc.nodeByName("a red fox #42")
    assert pixel(layer, 50, 45) == result_color(0)
    assert pixel(layer, 33, 25)[3] == 0  # inside the region, outside the selection
    assert pixel(layer, 0, 0)[3] == 0


def test_selection_past_the_edge_is_clipped_and_transparency_outpaints(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([9, 9, 9, 255]))
    select(doc, 40, 8, 40, 24)  # 16 px past the right edge: clipped to the canvas
    assert ctl.mode_preview().startswith("Inpaint")
    ctl.generate()
    finish(ctl)
    p = server.last_job().params
    assert p["mode"] == "inpaint" and p["x"] + p["width"] <= 64 and p["x"] >= 0
    doc2 = new_doc(fake_krita)  # empty canvas + selection = transparent under the selection
    select(doc2, 8, 8, 16, 16)
    assert ctl.mode_preview().startswith("Outpaint")


def test_refine_whole_image_sends_the_pixels(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    new_doc(fake_krita, fill=bytes([50, 60, 70, 255]))
    ctl.update_settings(strength=0.5, prompt="")
    assert "Refine the whole image (50%)" in ctl.mode_preview()
    ctl.generate()
    finish(ctl)
    job = server.last_job()
    assert job.params["mode"] == "img2img" and job.params["strength"] == 0.5
    assert job.params["prompt"] == ""  # an empty prompt is allowed
    assert job.parts["image"][1] == bytes([50, 60, 70, 255]) * 4096


def test_server_down_says_how_to_start_it_and_leaves_the_canvas(fake_krita: krita.Krita) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = make_controller(fake_krita, f"http://127.0.0.1:{port}")
    doc = new_doc(fake_krita)
    ctl.generate()
    finish(ctl, "error")
    assert "diffusion-layers serve" in ctl.last_error
    assert names(doc) == ["Background"] and doc.undo_steps == []
    ctl.connect_server()
    wait_until(lambda: ctl.connection.state == "error", what="health retries to give up")
    assert "diffusion-layers serve" in ctl.connection.message


def test_backend_error_json_is_shown_and_nothing_changes(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    server.submit_error = (
        422,
        {"error": {"code": "model_not_found", "message": "No checkpoint 'x'", "field": "model"}},
    )
    ctl.generate()
    finish(ctl, "error")
    assert ctl.last_error.startswith("Model missing: No checkpoint 'x'")
    server.submit_error = (
        400,
        {"error": {"code": "invalid_request", "message": "steps too high", "field": "steps"}},
    )
    ctl.generate()
    finish(ctl, "error")
    assert "steps too high (field: steps)" in ctl.last_error
    server.submit_error = None
    server.fail_job = {"code": "out_of_memory", "message": "Out of GPU memory", "field": None}
    ctl.generate()
    finish(ctl, "error")
    assert "out_of_memory" in ctl.last_error and "Out of GPU memory" in ctl.last_error
    assert names(doc) == ["Background"] and doc.undo_steps == []


def test_cancel_stops_the_job_on_the_server(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    server.step_delay = 0.05
    ctl.update_settings(steps=40)
    progress = []
    ctl.progress.connect(lambda step, total: progress.append((step, total)))
    previews = []
    ctl.preview_image.connect(previews.append)
    ctl.generate()
    wait_until(lambda: len(progress) >= 2 and previews, what="progress and a live preview")
    assert progress[-1][1] == 40 and previews[0].width() == 8
    assert ctl.cancel()
    assert ctl.state == "idle"
    wait_until(lambda: server.deleted, what="DELETE to reach the server")
    assert server.deleted == [server.last_job().id]
    pump(0.2)
    assert names(doc) == ["Background"] and ctl.state == "idle"


def test_closed_document_discards_its_job_and_documents_stay_apart(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.02
    doc_a = new_doc(fake_krita)
    ctl.generate()
    doc_b = new_doc(fake_krita, fill=bytes([5, 5, 5, 255]))
    ctl.update_settings(strength=0.5, seed=7)
    ctl.generate()
    doc_c = new_doc(fake_krita)
    ctl.generate()
    fake_krita.close_document(doc_c)  # closed while generating
    fake_krita.set_active(doc_a)
    finish(ctl)
    fake_krita.set_active(doc_b)
    finish(ctl)
    modes = sorted(j.params["mode"] for j in server.jobs.values())
    assert modes == ["img2img", "txt2img", "txt2img"]
    assert names(doc_a) == ["Background", "[Preview] a red fox #42"]
    assert names(doc_b) == ["Background", "[Preview] a red fox #7"]
    assert ctl.used_seed == 7
    ctl.apply()
    fake_krita.set_active(doc_a)
    assert ctl.state == "preview" and ctl.used_seed == 42
    assert len(ctl.sessions) == 2


def test_polling_fallback_when_there_is_no_event_stream(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.sse = False
    new_doc(fake_krita)
    ctl.generate()
    finish(ctl)
    assert ("GET", f"/v1/jobs/{server.last_job().id}") in server.requests


def test_token_is_sent_and_a_wrong_one_is_reported(
    fake_krita: krita.Krita, server: V1Server
) -> None:
    server.token = "s3cret"
    ctl = make_controller(fake_krita, server.url, token="s3cret")
    new_doc(fake_krita)
    ctl.generate()
    finish(ctl)
    ctl.update_settings(token="wrong")
    ctl.generate()
    finish(ctl, "error")
    assert "missing or wrong token" in ctl.last_error


def test_closing_every_document_says_to_open_one(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    fake_krita.close_document(doc)
    assert not ctl.generate() and "Open or create a document" in ctl.last_error


def test_controls_travel_as_parts_and_a_missing_layer_is_named(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    lines = doc.createNode("Lines", "paintlayer")
    doc.rootNode().addChildNode(lines, None)
    lines.setPixelData(bytes([0, 0, 0, 255]) * 4096, 0, 0, 64, 64)
    doc.setActiveNode(lines)
    assert ctl.add_active_layer_as_control("lineart")
    assert not ctl.add_active_layer_as_control("lineart")  # no duplicates
    assert "already a control layer" in ctl.last_error
    stored = json.loads(bytes(doc.annotation("diffusion_layers_controls")))  # kept in the .kra
    layer_id = str(lines.uniqueId().toString())
    assert stored == [
        {
            "layer": "Lines",
            "type": "lineart",
            "strength": 1.0,
            "start": 0.0,
            "end": 1.0,
            "layer_id": layer_id,
        }
    ]
    ctl.generate()
    finish(ctl)
    job = server.last_job()
    assert job.params["controls"][0]["type"] == "lineart"
    assert job.parts["control_0"][1] == bytes([0, 0, 0, 255]) * 4096
    lines.setName("Renamed")  # found by its uniqueId: a rename changes nothing
    assert ctl.generate()
    finish(ctl)
    assert ctl.controls.labels() == ["Renamed"]
    lines.remove()
    assert ctl.controls.labels() == ["Renamed — layer deleted"]
    assert not ctl.generate()
    assert "Control layer 'Renamed' is not in this document any more" in ctl.last_error


def test_apply_all_makes_a_group_and_reuse_restores_settings(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    ctl.update_settings(batch=3)
    ctl.generate()
    finish(ctl)
    assert [r.seed for r in ctl.results] == [42, 43, 44]
    assert ctl.show_result(2) and ctl.used_seed == 44
    preview = [n for n in doc.all_nodes() if n.name().startswith("[Preview]")][0]
    assert pixel(preview, 0, 0) == result_color(2)
    before = len(doc.undo_steps)
    ids = ctl.apply_all()
    assert len(ids) == 3
    assert [s for s in doc.undo_steps[before:] if s[0] == "add"] == [("add", "a red fox ×3")]
    group = doc.nodeByName("a red fox ×3")
    assert [c.name() for c in group.childNodes()] == [
        "a red fox #42",
        "a red fox #43",
        "a red fox #44",
    ]
    assert not any(n.startswith("[Preview]") for n in names(doc))
    ctl.update_settings(prompt="something else", seed=-1, steps=9)
    assert ctl.reuse_settings(ids[1])
    assert (ctl.settings.prompt, ctl.settings.seed, ctl.settings.steps) == ("a red fox", 43, 2)
    assert fake_krita.readSetting(GROUP, "seed", "") == "43"
    assert not ctl.reuse_settings("{not-a-layer}")
    stored = json.loads(bytes(doc.annotation(ANNOTATION_TYPE)))
    assert JobParams.from_dict(stored[ids[2]]["params"]).batch == 3


def test_preprocess_to_layer_adds_the_control_map(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([0, 0, 0, 255]))
    assert ctl.preprocess_to_layer("depth")
    wait_until(
        lambda: doc.nodeByName("[Control] depth: Background") is not None,
        what="the control map layer",
    )
    layer = doc.nodeByName("[Control] depth: Background")
    assert pixel(layer, 5, 5) == bytes([255, 255, 255, 255])  # the fake server inverts
    assert not ctl.preprocess_to_layer("bogus")
    assert "control type 'bogus'" in ctl.last_error


def test_connect_loads_health_and_models(ctl: Controller, server: V1Server) -> None:
    ctl.connect_server()
    wait_until(lambda: ctl.connection.models is not None, what="the model list")
    assert ctl.connection.state == "connected" and "cpu" in ctl.connection.message
    assert [c.name for c in ctl.connection.models.checkpoints] == ["tiny"]


def test_applied_layer_lands_directly_above_the_active_layer(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    root = doc.rootNode()
    paint, top = doc.createNode("Paint", "paintlayer"), doc.createNode("Top", "paintlayer")
    root.addChildNode(paint, doc.nodeByName("Background"))
    root.addChildNode(top, paint)
    doc.setActiveNode(paint)
    ctl.update_settings(batch=2)
    ctl.generate()
    finish(ctl)
    assert [n.name() for n in root.childNodes()] == [
        "Background",
        "Paint",
        "[Preview] a red fox #42",
        "Top",
    ]
    assert doc.activeNode() is paint  # the preview does not steal the active layer
    ctl.show_result(1)
    doc.setActiveNode(top)  # Krita may activate something else meanwhile
    ctl.apply()
    assert [n.name() for n in root.childNodes()] == ["Background", "Paint", "a red fox #43", "Top"]
    ctl.show_result(0)
    ctl.apply_all()
    assert [n.name() for n in root.childNodes()] == [
        "Background",
        "Paint",
        "a red fox #43",
        "a red fox ×2",
        "Top",
    ]


def test_result_layers_are_named_without_prompt_syntax(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    ctl.update_settings(prompt="a cat (red:1.2), <lora:ink:0.5> {red|blue}\n# a comment line")
    ctl.generate()
    finish(ctl)
    assert names(doc) == ["Background", "[Preview] a cat red {red|blue} #42"]
    ctl.apply()
    assert names(doc) == ["Background", "a cat red {red|blue} #42"]
