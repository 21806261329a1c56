"""QA bug 1 (Krita segfault): a document closed while the plugin is inside one of Krita's waits.

In Krita, ``waitForDone`` and the colour conversion of a scratch document (``setColorSpace``)
run the event loop while the image is busy; the artist can close the document right there.
Every write that follows an asynchronous callback (a live frame, a job result, a preview, a
control map) must then refuse the closed document instead of writing into it. The fake Krita
models the event loop by closing the document inside those calls."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import krita
import pytest
from api.fake_engine import FakeEngine
from api.harness import serve_app
from diffusion_layers.canvas import NewLayer
from diffusion_layers.client import Client
from diffusion_layers.controller import Controller
from diffusion_layers.errors import NoDocument
from diffusion_layers.geometry import Rect
from diffusion_layers.krita_adapter import KritaCanvas, KritaDocument, KritaSettingsStore
from diffusion_layers.live import LIVE_LAYER_NAME
from plugin_helpers import pump, wait_until
from test_live_plugin import GROUP, SIZE

from backend.settings import Settings

GREY = struct.pack("<4f", 0.5, 0.5, 0.5, 1.0)
INK = struct.pack("<4f", 0.02, 0.03, 0.04, 1.0)


@pytest.fixture
def backend(tmp_path) -> Iterator[object]:
    settings = Settings(output_dir=str(tmp_path / "out"), log_progress=False)
    with serve_app(settings, FakeEngine()) as running:
        yield running


@pytest.fixture
def ctl(fake_krita: krita.Krita, backend) -> Iterator[Controller]:
    url = backend.base_url  # type: ignore[attr-defined]
    for key, value in {"server_url": url, "prompt": "a red fox", "seed": "42"}.items():
        fake_krita.writeSetting(GROUP, key, value)
    controller = Controller(KritaCanvas(), Client(url), KritaSettingsStore())
    yield controller
    controller.live.stop()


def float_doc(app: krita.Krita) -> krita.Document:
    """An RGBA/F32 document (linear profile): every write goes through a scratch conversion."""
    doc = app.createDocument(SIZE, SIZE, "float", "RGBA", "F32", "", 72.0)
    background = doc.nodeByName("Background")
    assert background is not None
    background.setPixelData(GREY * (SIZE * SIZE), 0, 0, SIZE, SIZE)
    app.set_active(doc)
    return doc


def stroke(doc: krita.Document, x: int, y: int, w: int = 16, h: int = 4) -> None:
    node = doc.nodeByName("Background")
    assert node is not None
    node.setPixelData(INK * (w * h), x, y, w, h)


@pytest.fixture
def writes_after_close(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of nodes written after their document was closed (Krita: a segfault)."""
    seen: list[str] = []
    original = krita.Node.setPixelData

    def checked(node: krita.Node, value, x: int, y: int, w: int, h: int) -> bool:
        if node._doc not in krita.Krita.instance().documents():
            seen.append(str(node.name()))
        return original(node, value, x, y, w, h)

    monkeypatch.setattr(krita.Node, "setPixelData", checked)
    return seen


def close_inside(
    monkeypatch: pytest.MonkeyPatch, cls: type, method: str, doc: krita.Document
) -> Callable[[], bool]:
    """The next ``cls.method`` call first closes ``doc``, as the artist's close handled in
    Krita's event loop during that call; returns whether that happened."""
    original = getattr(cls, method)
    done: list[bool] = []

    def closing(self, *args):
        if not done and doc in krita.Krita.instance().documents():
            done.append(True)
            doc.setModified(False)
            doc.close()
        return original(self, *args)

    monkeypatch.setattr(cls, method, closing)
    return lambda: bool(done)


def test_a_live_frame_arriving_while_the_document_closes_is_dropped(
    ctl: Controller,
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
    writes_after_close: list[str],
) -> None:
    doc = float_doc(fake_krita)
    assert ctl.toggle_live() is True
    wait_until(lambda: ctl.live.frames_shown >= 1, what="the first live frame")
    assert doc.nodeByName(LIVE_LAYER_NAME) is not None
    closed = close_inside(monkeypatch, krita.Node, "setColorSpace", doc)
    stroke(doc, 8, 8)  # a new frame; its conversion (scratch document) runs the close
    wait_until(lambda: not ctl.live.running, what="live mode to stop with its document")
    assert closed()
    assert ctl.live.last_error == "The document was closed."
    assert writes_after_close == []


def test_a_document_closed_while_live_reads_the_canvas_stops_live(
    ctl: Controller,
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
    writes_after_close: list[str],
) -> None:
    doc = float_doc(fake_krita)
    assert ctl.toggle_live() is True
    wait_until(lambda: ctl.live.frames_shown >= 1, what="the first live frame")
    live = doc.nodeByName(LIVE_LAYER_NAME)
    assert live is not None
    closed = close_inside(monkeypatch, krita.Document, "waitForDone", doc)
    stroke(doc, 8, 8)  # the next read hides the live layer and waits: the close runs there
    wait_until(lambda: not ctl.live.running, what="live mode to stop with its document")
    assert closed()
    assert ctl.live.last_error == "The document was closed."
    assert writes_after_close == []
    assert live.visible() is False  # the closed document's layer was never touched again


@pytest.mark.parametrize("write", ["add_layer", "show_preview", "add_group"])
def test_results_are_not_written_into_a_document_closed_during_their_conversion(
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
    writes_after_close: list[str],
    write: str,
) -> None:
    """Job results, previews, Apply all and control maps all end in these writes."""
    doc = float_doc(fake_krita)
    adapter = KritaDocument(doc)
    layer = NewLayer("result", bytes([10, 20, 30, 255]) * 64, Rect(4, 4, 8, 8))
    closed = close_inside(monkeypatch, krita.Node, "setColorSpace", doc)
    with pytest.raises(NoDocument, match="The document was closed."):
        if write == "add_group":
            adapter.add_group("results", [layer])
        else:
            getattr(adapter, write)(layer)
    assert closed()
    assert writes_after_close == []


def test_apply_does_not_send_the_applied_frame_back_as_a_new_frame(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    """The canvas after Apply shows the frame already: no render for it (a frame landing right
    after Apply is what met the artist's close in QA bug 1); painting again sends one."""
    doc = float_doc(fake_krita)
    assert ctl.toggle_live() is True
    wait_until(lambda: ctl.live.frames_shown >= 1 and not ctl.live._in_flight, what="a frame")
    sent = ctl.live.frames_sent
    assert ctl.live.apply() is not None
    pump(1.0)  # several polls (120 ms) and debounces
    assert ctl.live.frames_sent == sent
    applied = doc.activeNode()  # strokes land on the active layer: the applied one now
    assert applied is not None
    applied.setPixelData(INK * 64, 8, 8, 16, 4)
    wait_until(lambda: ctl.live.frames_sent > sent, what="a frame for the new stroke")
