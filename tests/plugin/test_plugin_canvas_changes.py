"""The canvas changes under a job (Crop, Scale, Resize Canvas): nothing planned for the old
canvas is ever placed; and canvases too small for the server get a sentence to act on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import krita
import pytest
from api.fake_engine import FakeEngine
from diffusion_layers.controller import Controller
from diffusion_layers.errors import CanvasChanged
from diffusion_layers.geometry import GeometryError, Rect, canvas_region, check_region
from diffusion_layers.placement import check_canvas
from plugin_helpers import wait_until
from test_live_plugin import SIZE, backend, engine, settle, stroke  # noqa: F401 (fixtures)
from test_live_plugin import new_doc as live_doc
from test_plugin_controller import finish, make_controller, names, new_doc, select
from v1_server import V1Server

CHANGED = "The image was cropped or resized while generating; nothing was placed. Generate again."

Change = Callable[[krita.Document], object]
CHANGES: dict[str, Change] = {
    "crop_offset": lambda d: d.crop(16, 16, 32, 32),
    "crop_origin": lambda d: d.crop(0, 0, 32, 32),
    "crop_same_size_other_shape": lambda d: d.crop(0, 0, 32, 128),
    "scale": lambda d: d.scaleImage(32, 32, 72, 72, "Bicubic"),
    "scale_up": lambda d: d.scaleImage(128, 128, 72, 72, "Bicubic"),
    "resize_canvas": lambda d: d.resizeImage(-8, -8, 80, 80),
    "rotate_non_square": lambda d: d.scaleImage(64, 48, 72, 72, "Bicubic"),
}


@pytest.fixture
def server() -> Iterator[V1Server]:
    srv = V1Server().start()
    yield srv
    srv.stop()


@pytest.fixture
def ctl(fake_krita: krita.Krita, server: V1Server) -> Controller:
    return make_controller(fake_krita, server.url, prompt="a red fox", seed="42")


def _during_job(ctl: Controller, server: V1Server, doc: krita.Document, change: Change) -> None:
    server.step_delay = 0.03
    ctl.update_settings(steps=20)
    assert ctl.generate()
    wait_until(lambda: server.jobs and ctl.session().step >= 1, what="the job to run")  # type: ignore[union-attr]
    change(doc)
    finish(ctl, "error")


@pytest.mark.parametrize("label", sorted(CHANGES))
@pytest.mark.parametrize("selected", [False, True])
def test_a_result_for_the_old_canvas_is_refused_and_nothing_placed(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita, label: str, selected: bool
) -> None:
    doc = new_doc(fake_krita, fill=bytes([9, 9, 9, 255]))
    if selected:
        select(doc, 8, 8, 16, 16)
    _during_job(ctl, server, doc, CHANGES[label])
    assert ctl.last_error == CHANGED
    assert names(doc) == ["Background"]  # no preview, no layer
    assert ctl.apply() is None and ctl.apply_all() == []
    assert names(doc) == ["Background"]
    # The next job is planned for the new canvas and lands.
    server.step_delay = 0.0
    assert ctl.generate()
    finish(ctl)
    job = server.last_job().params
    assert (job["width"], job["height"]) <= (doc.width(), doc.height())
    assert ctl.apply()
    layer = [n for n in doc.all_nodes() if n.name().startswith("a red fox")]
    assert len(layer) == 1


def test_a_canvas_change_after_the_preview_refuses_apply_apply_all_and_thumbnails(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([9, 9, 9, 255]))
    ctl.update_settings(batch=2)
    assert ctl.generate()
    finish(ctl)
    doc.crop(16, 16, 32, 32)
    since = "since this result was generated; nothing was placed. Generate again."
    assert ctl.apply() is None and ctl.last_error.endswith(since)
    assert ctl.apply_all() == [] and ctl.last_error.endswith(since)
    assert not [n for n in doc.all_nodes() if n.name().startswith("a red fox")]
    assert ctl.show_result(1) is False and ctl.last_error.endswith(since)
    doc.crop(0, 0, 64, 64)  # the original bounds again (undoing the crop): Apply works
    assert ctl.apply()
    assert [n.name() for n in doc.all_nodes()] == ["Background", "a red fox #42"]


def test_check_canvas_refuses_any_other_bounds() -> None:
    check_canvas(None, Rect(0, 0, 8, 8))  # no job planned: nothing to compare
    check_canvas(Rect(0, 0, 512, 512), Rect(0, 0, 512, 512))
    for now in (Rect(0, 0, 256, 256), Rect(0, 0, 512, 513), Rect(128, 128, 512, 512)):
        with pytest.raises(CanvasChanged, match="cropped or resized while generating"):
            check_canvas(Rect(0, 0, 512, 512), now)


# -- canvases the server cannot take -------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "sentence"),
    [
        ((7, 1001), "This image is 7 px wide; generation needs at least 8 px."),
        ((1, 1), "This image is 1 px wide; generation needs at least 8 px."),
        ((3000, 7), "This image is 7 px high; generation needs at least 8 px."),
    ],
)
def test_a_canvas_under_8_px_is_refused_with_what_to_do(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita, size, sentence
) -> None:
    with pytest.raises(GeometryError) as refused:
        canvas_region(Rect(0, 0, *size))
    assert str(refused.value) == f"{sentence} Enlarge the canvas (Image ▸ Resize Canvas)."
    doc = new_doc(fake_krita, fill=bytes([9, 9, 9, 255]), size=size)
    assert ctl.mode_preview() == f"Cannot generate: {refused.value}"
    select(doc, 0, 0, min(size[0], 4), min(size[1], 4))  # an edge selection: the same
    assert ctl.mode_preview() == f"Cannot generate: {refused.value}"
    assert ctl.generate() is False and ctl.last_error == str(refused.value)
    assert not server.jobs and names(doc) == ["Background"]


def test_the_largest_region_is_refused_with_what_to_do() -> None:
    assert check_region(Rect(0, 0, 8, 8)) == Rect(0, 0, 8, 8)
    with pytest.raises(GeometryError, match="at most 8192x8192 px. Select a smaller area"):
        check_region(Rect(0, 0, 8193, 8))


# -- live mode: a frame planned for the old canvas -----------------------------------------


@pytest.fixture
def live_ctl(fake_krita: krita.Krita, backend) -> Iterator[Controller]:  # noqa: F811
    controller = make_controller(fake_krita, backend.base_url, prompt="a red fox", seed="42")
    yield controller
    controller.live.stop()


def test_a_live_frame_for_the_old_canvas_is_never_shown_nor_applied(
    live_ctl: Controller,
    fake_krita: krita.Krita,
    engine: FakeEngine,  # noqa: F811
) -> None:
    ctl = live_ctl
    doc = live_doc(fake_krita)
    shown: list[tuple[Rect, Rect]] = []  # every frame shown, and the canvas then

    def record() -> None:
        if ctl.live.frame is not None and ctl.live.running:
            shown.append((ctl.live.frame.rect, Rect(0, 0, doc.width(), doc.height())))

    ctl.live.changed.connect(record)
    ctl.toggle_live()
    settle(ctl)
    old = ctl.live.frame
    assert old is not None and old.rect == Rect(0, 0, SIZE, SIZE)
    # 1. Cropped after the frame was shown: Apply refuses it, nothing is added.
    doc.crop(16, 16, 32, 32)
    assert ctl.apply() is None
    assert ctl.last_error.startswith("The image was cropped or resized since this result")
    assert not [n for n in doc.all_nodes() if n.name().startswith("a red fox")]
    wait_until(lambda: ctl.live.frame.rect == Rect(0, 0, 32, 32), what="a frame for 32x32")  # type: ignore[union-attr]
    # 2. Scaled while a frame renders: that frame is dropped, the next one fits the canvas.
    engine.step_delay = 0.03
    stroke(doc, 0, 0, 8, 2)
    wait_until(lambda: ctl.live._in_flight, what="a frame in flight")
    before = ctl.live.frames_shown
    doc.scaleImage(24, 40, 72, 72, "Bicubic")
    wait_until(lambda: ctl.live.frame.rect == Rect(0, 0, 24, 40), what="a frame for 24x40")  # type: ignore[union-attr]
    settle(ctl)
    assert ctl.live.frames_shown > before
    assert ctl.live.frame is not None and ctl.live.frame.rect == Rect(0, 0, 24, 40)
    assert all(rect == canvas for rect, canvas in shown), shown  # never a stale frame
    layer_id = ctl.apply()
    assert layer_id
    applied = [n for n in doc.all_nodes() if n.name().startswith("a red fox")]
    assert len(applied) == 1 and applied[0].bounds().width() <= 24


def test_a_control_map_for_the_old_canvas_is_refused(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=bytes([0, 0, 0, 255]))
    assert ctl.preprocess_to_layer("depth")
    doc.crop(16, 16, 32, 32)  # before the map arrives (it needs the event loop)
    wait_until(lambda: ctl.last_error == CHANGED, what="the control map to be refused")
    assert names(doc) == ["Background"]
