"""Upscale / Refine detail in the plugin (issue #15): sizes, documents, layers, strips, settings.

Driven against the fake Krita and the loopback v1 server (results are solid colours, an
upscale result is round(W*f) x round(H*f))."""

from __future__ import annotations

import json

import krita
import pytest
from diffusion_layers.controller import Controller
from diffusion_layers.geometry import Rect
from diffusion_layers.settings import GROUP, DictStore, PluginSettings
from diffusion_layers.turns import STRIP_PIXELS, read_strips, strip_rows, strips, write_strips
from diffusion_layers.upscale_request import scaled_size
from diffusion_layers.upscale_settings import IN_PLACE, NEW_DOCUMENT, UpscaleSettings
from plugin_helpers import pump, wait_until
from test_plugin_controller import make_controller, new_doc, select
from v1_server import V1Server, result_color


@pytest.fixture
def server():
    srv = V1Server().start()
    yield srv
    srv.stop()


@pytest.fixture
def ctl(fake_krita: krita.Krita, server: V1Server) -> Controller:
    return make_controller(fake_krita, server.url, prompt="fine detail", seed="7")


def gradient(w: int, h: int) -> bytes:
    return b"".join(
        bytes([x % 256, y % 256, (x + y) % 256, 255]) for y in range(h) for x in range(w)
    )


def upscale(ctl: Controller, **values: object) -> None:
    ctl.upscale.update(**values)
    assert ctl.upscale.start(), ctl.upscale.message
    wait_until(lambda: not ctl.upscale.busy, what="the upscale to end")


def job_params(server: V1Server) -> dict:
    return server.last_job().params


@pytest.mark.parametrize(
    ("size", "factor", "expected"),
    [((30, 20), 1.5, (45, 30)), ((33, 17), 1.5, (50, 26)), ((21, 9), 2.37, (50, 21))],
)
def test_new_document_has_exactly_the_scaled_size_name_and_pixels(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita, size, factor, expected
) -> None:
    doc = new_doc(fake_krita, size=size)
    doc.nodeByName("Background").setPixelData(gradient(*size), 0, 0, *size)
    upscale(ctl, factor=factor, target=NEW_DOCUMENT)
    assert ctl.upscale.state == "idle", ctl.upscale.message
    assert scaled_size(*size, factor) == expected
    made = [d for d in fake_krita.documents() if d is not doc]
    assert len(made) == 1
    new = made[0]
    assert (new.width(), new.height()) == expected
    assert new.name() == f"test x{factor:g}"
    assert new.resolution() == int(72 * factor)
    assert fake_krita.activeWindow().views == [new]
    assert fake_krita.activeDocument() is new
    layer = new.rootNode().childNodes()[0]
    assert bytes(layer.pixelData(0, 0, *expected)) == result_color(0) * (expected[0] * expected[1])
    params = job_params(server)
    assert params["mode"] == "upscale" and (params["width"], params["height"]) == size
    assert params["upscale"]["factor"] == factor and params["upscale"]["refine"] is False
    assert server.last_job().parts["image"][1] == gradient(*size)  # the whole canvas, exact
    assert "mask" not in server.last_job().parts
    assert len(doc.rootNode().childNodes()) == 1  # the source document is untouched


def test_new_document_keeps_the_source_colour_space(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, size=(16, 12), depth="U16")
    upscale(ctl, factor=2.0, target=NEW_DOCUMENT, model="4x-Sharp.pth", refine=True)
    new = [d for d in fake_krita.documents() if d is not doc][0]
    assert (new.colorModel(), new.colorDepth()) == ("RGBA", "U16")
    assert (new.width(), new.height()) == (32, 24)


def test_refine_in_place_of_a_soft_selection_previews_then_applies_one_exact_layer(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([10, 20, 30, 255]), size=(40, 30))
    sel = krita.Selection()
    soft = bytes(([255] * 10 + [128] * 10) * 8)  # 20x8, right half half-selected
    sel.setPixelData(soft, 12, 5, 20, 8)
    doc.setSelection(sel)
    ctl.upscale.update(target=IN_PLACE, factor=3.0, strength=0.4)
    before = [n.name() for n in doc.rootNode().childNodes()]
    assert ctl.upscale.start()
    wait_until(lambda: ctl.state == "preview", what="the preview")
    params = job_params(server)
    assert (params["x"], params["y"], params["width"], params["height"]) == (12, 5, 20, 8)
    assert params["upscale"] == {
        "factor": 1.0,
        "model": None,
        "refine": True,
        "tile_size": None,
        "tile_overlap": None,
    }
    assert params["strength"] == 0.4
    assert server.last_job().parts["mask"][1] == soft
    layer_id = ctl.apply()
    assert layer_id
    nodes = doc.rootNode().childNodes()
    assert len(nodes) == len(before) + 1
    new = [n for n in nodes if n.name() not in before][0]
    b = new.bounds()
    assert (b.x(), b.y(), b.width(), b.height()) == (12, 5, 20, 8)
    assert bytes(new.pixelData(0, 0, 12, 5)) == bytes(12 * 5 * 4)  # nothing outside


def test_refine_in_place_without_selection_uses_the_active_layer_bounds(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, size=(50, 40))
    node = doc.nodeByName("Background")
    node.setPixelData(bytes([1, 2, 3, 255]) * (15 * 9), 20, 11, 15, 9)
    ctl.upscale.update(target=IN_PLACE)
    assert ctl.upscale.start()
    wait_until(lambda: ctl.state == "preview", what="the preview")
    params = job_params(server)
    assert (params["x"], params["y"], params["width"], params["height"]) == (20, 11, 15, 9)
    assert "mask" not in server.last_job().parts


def test_refine_in_place_of_an_empty_layer_takes_the_canvas(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    new_doc(fake_krita, size=(24, 16))
    ctl.upscale.update(target=IN_PLACE)
    assert ctl.upscale.start()
    wait_until(lambda: ctl.state == "preview", what="the preview")
    params = job_params(server)
    assert (params["x"], params["y"], params["width"], params["height"]) == (0, 0, 24, 16)


@pytest.mark.parametrize(
    ("size", "values", "words"),
    [
        ((3000, 10), {"factor": 3.0}, "at most 2.73"),
        ((64, 64), {"factor": 1.0, "refine": False}, "Refine detail"),
        ((64, 64), {"factor": 4.5}, "1 to 4"),
        ((64, 4), {"factor": 2.0}, "at least 8x8"),
    ],
)
def test_what_the_server_would_refuse_is_said_before_anything_is_sent(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita, size, values, words
) -> None:
    new_doc(fake_krita, size=size)
    ctl.upscale.settings.target = NEW_DOCUMENT
    for key, value in values.items():
        setattr(ctl.upscale.settings, key, value)
    assert not ctl.upscale.start()
    assert ctl.upscale.state == "failed" and words in ctl.upscale.message, ctl.upscale.message
    assert not server.jobs and len(fake_krita.documents()) == 1


def test_cancel_stops_the_job_and_opens_no_document(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.2
    new_doc(fake_krita, size=(20, 20))
    ctl.upscale.update(factor=2.0, target=NEW_DOCUMENT)
    assert ctl.upscale.start()
    wait_until(lambda: bool(server.jobs), what="the job to be submitted")
    wait_until(lambda: ctl.upscale._job_id is not None, what="the job id")
    assert ctl.upscale.cancel()
    wait_until(lambda: server.last_job().cancelled, what="the server to cancel")
    pump(0.5)
    assert len(fake_krita.documents()) == 1 and ctl.upscale.state == "idle"


def test_a_result_of_the_wrong_size_opens_no_document(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    new_doc(fake_krita, size=(20, 20))
    server.result_box = (0, 0, 39, 40)
    ctl.upscale.update(factor=2.0, target=NEW_DOCUMENT)
    assert ctl.upscale.start()
    wait_until(lambda: not ctl.upscale.busy, what="the upscale to end")
    assert ctl.upscale.state == "failed" and "39x40" in ctl.upscale.message
    assert len(fake_krita.documents()) == 1


def test_strips_cover_the_area_exactly_once() -> None:
    rect = Rect(3, 5, 7, 10)
    parts = list(strips(rect, 3))
    assert [p.height for p in parts] == [3, 3, 3, 1]
    assert all(p.x == 3 and p.width == 7 for p in parts) and parts[-1].bottom == rect.bottom
    assert strip_rows(6000) == STRIP_PIXELS // 6000 and strip_rows(10**7) == 1
    data = bytes(i % 251 for i in range(7 * 10 * 4))
    got: list[tuple[bytes, Rect]] = []
    steps = list(write_strips(lambda d, r: got.append((d, r)), data, rect, pixels=21))
    assert len(steps) == 4 and b"".join(d for d, _ in got) == data
    out: list[bytes] = []
    rows = lambda r: b"".join(bytes([y]) * r.width for y in range(r.y, r.bottom))  # noqa: E731
    list(read_strips(rows, rect, out, pixels=21))
    assert b"".join(out) == b"".join(bytes([y]) * 7 for y in range(5, 15))
    with pytest.raises(ValueError, match="do not cover"):
        list(write_strips(lambda d, r: None, b"x", rect))


def test_upscale_settings_round_trip_and_guard_clauses() -> None:
    store = DictStore()
    s = UpscaleSettings(factor=1.75, model="4x.pth", refine=True, strength=0.3, target=IN_PLACE)
    s.tile_size, s.tile_overlap = 256, 32
    s.save(store)
    assert UpscaleSettings.load(store) == s
    store.values["upscale_factor"] = "lots"
    store.values["upscale_target"] = "elsewhere"
    loaded = UpscaleSettings.load(store)
    assert loaded.factor == 2.0 and loaded.target == NEW_DOCUMENT
    with pytest.raises(Exception, match="tile size"):
        UpscaleSettings(tile_size=10).check()


@pytest.mark.parametrize(("value", "stored"), [(None, "auto"), (True, "on"), (False, "off")])
def test_high_resolution_pass_setting_is_stored_and_sent(
    fake_krita: krita.Krita, server: V1Server, value, stored
) -> None:
    store = DictStore()
    settings = PluginSettings(hires=value)
    settings.save(store)
    assert store.values["hires"] == stored and PluginSettings.load(store).hires is value
    ctl = make_controller(fake_krita, server.url, hires=stored)
    new_doc(fake_krita)
    assert ctl.generate()
    wait_until(lambda: bool(server.jobs), what="the job")
    assert job_params(server)["hires"] is value


def test_docker_lists_upscalers_and_disables_the_unusable_one(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    from diffusion_layers.ui.upscale import PLAIN, UpscaleBox

    ctl.connect_server()
    wait_until(lambda: ctl.connection.models is not None, what="the models")
    box = UpscaleBox(ctl)
    box.refresh()
    texts = [box.model.itemText(i) for i in range(box.model.count())]
    assert texts == [PLAIN, "4x-Sharp.pth (x4)", "2x-pickle.pth (x2)"]
    items = box.model.model()
    assert items.item(1).isEnabled() and not items.item(2).isEnabled()
    assert "allow-pickle" in box.model.itemData(2, 3)  # Qt.ToolTipRole
    box.model.setCurrentIndex(1)
    box.model.activated.emit(1)
    assert ctl.upscale.settings.model == "4x-Sharp.pth"
    assert fake_krita.settings[(GROUP, "upscale_model")] == "4x-Sharp.pth"
    box.factor.setValue(1.5)
    assert ctl.upscale.settings.factor == 1.5
    box.target.setCurrentIndex(1)
    box.target.activated.emit(1)
    assert ctl.upscale.settings.target == IN_PLACE and not box.factor.isEnabled()
    json.dumps(ctl.upscale.settings.__dict__)  # plain data
    box.deleteLater()


def test_mode_sentence_of_a_large_canvas_reads_no_pixels(
    ctl: Controller, fake_krita: krita.Krita, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docker refreshes its sentence every 1.5 s: on a large canvas it must not read it."""
    from diffusion_layers import krita_adapter
    from diffusion_layers.ui.upscale import FULL_MODE_PIXELS, mode_sentence

    small = new_doc(fake_krita, size=(64, 64))
    assert mode_sentence(ctl) == ctl.mode_preview()
    big = fake_krita.createDocument(2100, 2000, "big", "RGBA", "U8", "", 72.0)
    assert 2100 * 2000 > FULL_MODE_PIXELS and fake_krita.activeDocument() is big

    def no_read(*_args: object) -> bytes:
        raise AssertionError("the mode sentence read the canvas")

    monkeypatch.setattr(krita_adapter.KritaDocument, "read_pixels", no_read)
    monkeypatch.setattr(krita_adapter.KritaDocument, "read_selection", no_read)
    ctl.update_settings(strength=0.5)
    assert mode_sentence(ctl) == "Refine the whole image (50%)"
    select(big, 10, 10, 100, 100)
    assert mode_sentence(ctl) == "Refine the selection (50%)"
    ctl.update_settings(strength=1.0)
    assert mode_sentence(ctl) == "Inpaint: fill the selection"
    assert small is not big


def test_the_refine_pass_carries_the_style_and_leaves_its_settings_to_it() -> None:
    from diffusion_layers.upscale_request import build_upscale, plan_upscale

    settings = PluginSettings(style="Anime", style_values={"steps": 20}, steps=20, prompt="cat")
    up = UpscaleSettings(factor=1.5, refine=True, strength=0.3)
    plan = plan_upscale(up, Rect(0, 0, 20, 10), None, None)
    params, parts = build_upscale(settings, up, plan, bytes(20 * 10 * 4), None)
    sent = json.loads(parts[0].data)
    assert sent["style"] == "Anime" and "steps" not in sent  # the style decides the steps
    assert sent["upscale"]["factor"] == 1.5 and sent["strength"] == 0.3
    assert (plan.out_width, plan.out_height) == (30, 15) and params.mode == "upscale"


def test_hires_choice_of_a_closed_window_docker_stops_following_the_settings(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Window > New Window makes a second docker; closing that window deletes its widgets while
    the controller lives on. Its next change must not raise into Krita's error dialog (which
    blocked Krita in the real-Krita `documents` launch)."""
    import importlib
    import sys

    from diffusion_layers import qt
    from diffusion_layers.ui.upscale import HIRES_TEXTS, hires_combo

    sip = importlib.import_module(f"{qt.BINDING}.sip")
    errors: list = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: errors.append(info))
    combo = hires_combo(ctl)
    sip.delete(combo)  # the widget is gone, as with a closed window
    ctl.changed.emit()
    ctl.changed.emit()
    assert errors == []
    kept = hires_combo(ctl)  # a docker still open keeps following
    ctl.update_settings(hires=False)
    ctl.changed.emit()
    assert kept.currentIndex() == [v for v, _ in HIRES_TEXTS].index(False)
