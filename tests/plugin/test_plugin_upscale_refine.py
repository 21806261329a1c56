"""The refine pass of Upscale sends what img2img sends (contract B): control layers over the
region, LoRAs; a plain upscale sends neither (the server refuses them there). The docker's
Tile size, and a prompt typed just before Upscale / Generate (inside the save debounce)."""

from __future__ import annotations

import krita
import pytest
from diffusion_layers.controller import Controller
from diffusion_layers.upscale_settings import IN_PLACE, NEW_DOCUMENT
from plugin_helpers import wait_until
from test_plugin_controller import make_controller, new_doc, select
from v1_server import V1Server


@pytest.fixture
def server():
    srv = V1Server().start()
    yield srv
    srv.stop()


@pytest.fixture
def ctl(fake_krita: krita.Krita, server: V1Server) -> Controller:
    return make_controller(
        fake_krita,
        server.url,
        prompt="fine detail",
        seed="7",
        loras='[{"name": "ink.safetensors", "weight": 0.6}]',
    )


def lines_layer(doc: krita.Document, w: int, h: int) -> tuple[krita.Node, bytes]:
    """A control layer whose every pixel differs: a crop shows where it was taken."""
    pixels = b"".join(bytes([x, y, (x * 7 + y) % 256, 255]) for y in range(h) for x in range(w))
    node = doc.createNode("Lines", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    node.setPixelData(pixels, 0, 0, w, h)
    doc.setActiveNode(node)
    return node, pixels


def crop(pixels: bytes, width: int, x: int, y: int, w: int, h: int) -> bytes:
    row = width * 4
    return b"".join(pixels[(y + r) * row + x * 4 : (y + r) * row + (x + w) * 4] for r in range(h))


def finish_preview(ctl: Controller) -> None:
    failed = lambda: ctl.upscale.state == "failed" or ctl.state == "error"  # noqa: E731
    wait_until(lambda: ctl.state == "preview" or failed(), what="the refined preview")
    assert not failed(), ctl.upscale.message or ctl.last_error


def test_refine_in_place_carries_the_control_layers_cropped_to_the_region(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(40, 30))
    _node, pixels = lines_layer(doc, 40, 30)
    assert ctl.add_active_layer_as_control("lineart"), ctl.last_error
    select(doc, 12, 5, 20, 8)
    ctl.upscale.update(target=IN_PLACE, strength=0.4)
    assert ctl.upscale.start(), ctl.upscale.message
    finish_preview(ctl)
    job = server.last_job()
    assert [c["type"] for c in job.params["controls"]] == ["lineart"]
    assert job.params["controls"][0]["image"] == "control_0"
    assert job.parts["control_0"][1] == crop(pixels, 40, 12, 5, 20, 8)
    assert [lo["name"] for lo in job.params["loras"]] == ["ink.safetensors"]


def test_a_plain_upscale_sends_no_controls_or_loras_and_a_refining_one_sends_both(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(24, 16))
    _node, pixels = lines_layer(doc, 24, 16)
    assert ctl.add_active_layer_as_control("scribble"), ctl.last_error
    ctl.upscale.update(target=NEW_DOCUMENT, factor=2.0, refine=False)
    assert ctl.upscale.start(), ctl.upscale.message
    wait_until(lambda: not ctl.upscale.busy, what="the plain upscale")
    plain = server.last_job()
    assert plain.params["controls"] == [] and plain.params["loras"] == []
    assert not [name for name in plain.parts if name.startswith("control_")]
    fake_krita.set_active(doc)  # the new document took the focus
    ctl.upscale.update(refine=True)
    assert ctl.upscale.start(), ctl.upscale.message
    wait_until(lambda: not ctl.upscale.busy, what="the refining upscale")
    refined = server.last_job()
    assert refined is not plain and refined.params["upscale"]["refine"] is True
    assert [c["type"] for c in refined.params["controls"]] == ["scribble"]
    assert refined.parts["control_0"][1] == pixels  # the whole canvas is the region
    assert refined.params["loras"] == [{"name": "ink.safetensors", "weight": 0.6}]


def test_a_deleted_control_layer_stops_the_refine_with_its_name_and_sends_nothing(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(24, 16))
    node, _pixels = lines_layer(doc, 24, 16)
    assert ctl.add_active_layer_as_control("scribble"), ctl.last_error
    node.remove()
    jobs = len(server.jobs)
    ctl.upscale.update(target=IN_PLACE)
    assert ctl.upscale.start(), ctl.upscale.message
    wait_until(lambda: not ctl.upscale.busy, what="the refine to stop")
    assert ctl.upscale.state == "failed"
    assert "Control layer 'Lines' is not in this document" in ctl.upscale.message
    assert len(server.jobs) == jobs


def test_tile_size_is_chosen_in_the_docker_stored_and_sent(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    from diffusion_layers.settings import GROUP
    from diffusion_layers.ui.upscale import TILE_TEXTS, UpscaleBox, tile_index

    new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(24, 16))
    box = UpscaleBox(ctl)
    ctl.upscale.update(target=IN_PLACE)
    assert box.tile.isEnabled() and box.tile.currentIndex() == 0  # Auto
    index = [v for v, _ in TILE_TEXTS].index(1024)
    box.tile.setCurrentIndex(index)
    box.tile.activated.emit(index)
    assert ctl.upscale.settings.tile_size == 1024
    assert fake_krita.settings[(GROUP, "upscale_tile_size")] == "1024"
    assert ctl.upscale.start(), ctl.upscale.message
    finish_preview(ctl)
    assert server.last_job().params["upscale"]["tile_size"] == 1024
    assert (tile_index(None), tile_index(700), tile_index(4096)) == (0, 2, len(TILE_TEXTS) - 1)
    ctl.upscale.update(target=NEW_DOCUMENT, refine=False)
    assert not box.tile.isEnabled()  # only the refine pass has tiles
    box.deleteLater()


@pytest.mark.parametrize("send", ["upscale button", "upscale action", "generate action"])
def test_a_prompt_typed_just_before_sending_is_what_is_sent(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita, send: str
) -> None:
    """Inside the 400 ms save debounce, with no event loop turn in between."""
    from diffusion_layers.ui.docker import DockerPanel

    new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(24, 16))
    panel = DockerPanel(ctl)
    panel.prompt.setPlainText("a lighthouse at dusk")
    panel.negative.setPlainText("fog")
    if send == "upscale button":
        ctl.upscale.update(target=IN_PLACE)
        panel.upscale.run.click()
    elif send == "upscale action":
        ctl.upscale.update(target=IN_PLACE)
        assert ctl.upscale.start(), ctl.upscale.message
    else:
        assert ctl.generate(), ctl.last_error
    wait_until(lambda: len(server.jobs) > 0, what="the job")
    params = server.last_job().params
    assert (params["prompt"], params["negative_prompt"]) == ("a lighthouse at dusk", "fog")
    wait_until(lambda: not panel._prompt_timer.isActive(), what="the debounced save")
    assert fake_krita.settings[("diffusion_layers", "prompt")] == "a lighthouse at dusk"
    panel.deleteLater()


def test_the_refine_pass_refuses_an_unknown_inline_lora_as_generate_does(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    """An unknown inline LoRA is refused before sending, as Generate refuses it."""
    new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(24, 16))
    ctl.connect_server()
    wait_until(lambda: ctl.connection.models is not None, what="the models")
    ctl.update_settings(prompt="detail <lora:nowhere:0.5>", negative_prompt="blurry")
    ctl.upscale.update(target=IN_PLACE)
    jobs = len(server.jobs)
    ctl.upscale.start()
    wait_until(lambda: not ctl.upscale.busy, what="the refusal")
    assert ctl.upscale.state == "failed" and "nowhere" in ctl.upscale.message
    assert len(server.jobs) == jobs
    ctl.update_settings(prompt="detail <lora:film:0.5>")  # an installed one goes
    assert ctl.upscale.start(), ctl.upscale.message
    finish_preview(ctl)
    assert server.last_job().params["prompt"] == "detail <lora:film:0.5>"


def test_the_cancel_action_stops_a_running_upscale(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    """QA2 bug 1: "Diffusion Layers: Cancel" (Ctrl+Alt+X, the extension's runner calls
    ``controller.cancel``) stops an upscale like the section's own Cancel button."""
    from diffusion_layers.extension import DiffusionLayersExtension, PluginApp

    server.step_delay = 0.2
    new_doc(fake_krita, size=(20, 20))
    app = PluginApp()
    app._controller = ctl
    cancel_action = DiffusionLayersExtension(None, app)._runner("cancel")
    ctl.upscale.update(factor=2.0, target=NEW_DOCUMENT, refine=True)
    assert ctl.upscale.start()
    wait_until(lambda: ctl.upscale._job_id is not None, what="the job id")
    cancel_action()
    assert ctl.upscale.state == "idle" and ctl.upscale.message == "Upscale cancelled."
    wait_until(lambda: server.last_job().cancelled, what="the server to cancel")
    assert len(fake_krita.documents()) == 1
    assert not ctl.cancel()  # nothing left to cancel
