"""Live mode end to end: fake Krita documents, the real controller and client, the real backend
app (deterministic FakeEngine) on loopback. Asserts on layers, pixels and undo steps."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import krita
import numpy as np
import pytest
from diffusion_layers.client import Client
from diffusion_layers.controller import Controller
from diffusion_layers.krita_adapter import KritaCanvas, KritaSettingsStore
from diffusion_layers.live import LIVE_LAYER_NAME, session_id
from plugin_helpers import pump, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ → the api helpers

from api.fake_engine import FakeEngine  # noqa: E402
from api.harness import serve_app  # noqa: E402

from backend.settings import Settings  # noqa: E402

GROUP = "diffusion_layers"
SIZE = 64
PAPER = bytes([230, 230, 230, 255])
INK = bytes([20, 30, 40, 255])


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def backend(tmp_path, engine) -> Iterator[object]:
    settings = Settings(output_dir=str(tmp_path / "out"), log_progress=False)
    with serve_app(settings, engine) as running:
        yield running


@pytest.fixture
def ctl(fake_krita: krita.Krita, backend) -> Iterator[Controller]:
    url = backend.base_url  # type: ignore[attr-defined]
    for key, value in {"server_url": url, "prompt": "a red fox", "seed": "42"}.items():
        fake_krita.writeSetting(GROUP, key, value)
    controller = Controller(KritaCanvas(), Client(url), KritaSettingsStore())
    yield controller
    controller.live.stop()


def new_doc(app: krita.Krita) -> krita.Document:
    doc = app.createDocument(SIZE, SIZE, "live", "RGBA", "U8", "", 72.0)
    background = doc.nodeByName("Background")
    assert background is not None
    background.setPixelData(PAPER * (SIZE * SIZE), 0, 0, SIZE, SIZE)
    return doc


def stroke(doc: krita.Document, x: int, y: int, w: int = 16, h: int = 4) -> None:
    """A stroke through the API: setPixelData on the paint layer (no undo step, as in Krita)."""
    node = doc.nodeByName("Background")
    assert node is not None
    node.setPixelData(INK * (w * h), x, y, w, h)


def live_node(doc: krita.Document) -> krita.Node | None:
    return doc.nodeByName(LIVE_LAYER_NAME)


def bgra_array(data: bytes, width: int = SIZE, height: int = SIZE) -> np.ndarray:
    return np.frombuffer(bytes(data), np.uint8).reshape(height, width, 4)


def expected_frame(canvas_bgra: np.ndarray, seed: int, strength: float) -> np.ndarray:
    """FakeEngine's img2img rule, in BGRA: the canvas mixed with the seed's colour."""
    rgb = canvas_bgra[..., [2, 1, 0]].astype(np.float64)
    colour = np.random.default_rng(seed).integers(0, 256, size=3, dtype=np.uint8)
    mixed = (rgb * (1.0 - strength) + colour * strength).astype(np.uint8)
    out = np.empty_like(canvas_bgra)
    out[..., :3], out[..., 3] = mixed[..., [2, 1, 0]], 255
    return out


def settle(ctl: Controller) -> None:
    """Wait until the frame for the current canvas is on screen."""
    live = ctl.live
    wait_until(
        lambda: live.frames_shown > 0 and not live._in_flight and live._requested == live._seen,
        what="live mode to catch up with the canvas",
    )


def test_toggle_paint_apply_undo_and_stop(ctl: Controller, fake_krita: krita.Krita) -> None:
    doc = new_doc(fake_krita)
    assert ctl.toggle_live() is True and ctl.live.running
    wait_until(lambda: ctl.live.frames_shown >= 1, what="the first live frame")
    node = live_node(doc)
    assert node is not None and node.locked()
    seed = ctl.live.frame.seed  # type: ignore[union-attr]
    canvas = bgra_array(PAPER * (SIZE * SIZE))
    shown = bgra_array(node.pixelData(0, 0, SIZE, SIZE))
    assert np.array_equal(shown, expected_frame(canvas, seed, ctl.live.strength))
    undo_after_first_frame = list(doc.undo_steps)
    # 1. Paint: a new frame follows, same seed, no undo step per frame.
    for x in (4, 24, 44):
        stroke(doc, x, 30)
        shown_before = ctl.live.frames_shown
        wait_until(lambda n=shown_before: ctl.live.frames_shown > n, what="a frame per stroke")
    settle(ctl)
    assert ctl.live.frame.seed == seed  # type: ignore[union-attr]
    painted = bgra_array(doc.nodeByName("Background").pixelData(0, 0, SIZE, SIZE))
    shown = bgra_array(node.pixelData(0, 0, SIZE, SIZE))
    assert np.array_equal(shown, expected_frame(painted, seed, ctl.live.strength))
    assert doc.undo_steps == undo_after_first_frame
    # 2. Nothing changes: nothing is sent (the live layer's own updates never count).
    sent = ctl.live.frames_sent
    pump(0.5)
    assert ctl.live.frames_sent == sent
    # 3. Apply: the current frame becomes a real layer, in one undo step.
    layer_id = ctl.apply()
    assert layer_id
    assert doc.undo_steps[len(undo_after_first_frame) :] == [("add", f"a red fox #{seed}")]
    applied = doc.nodeByName(f"a red fox #{seed}")
    assert np.array_equal(bgra_array(applied.pixelData(0, 0, SIZE, SIZE)), shown)
    # ... with what made it, so 'Reuse settings' works as for a generated layer.
    assert ctl.reuse_settings(layer_id)
    assert ctl.settings.seed == seed and ctl.settings.sampler == "dpmpp_2m_karras"
    assert ctl.settings.strength == ctl.live.strength and ctl.settings.steps == 8
    # 4. Off: the live layer goes, the server's session ends.
    assert ctl.toggle_live() is False
    assert live_node(doc) is None
    wait_until(lambda: ctl.live.client is not None and not ctl.live.running)


def test_one_frame_in_flight_and_the_latest_canvas_wins(
    ctl: Controller, fake_krita: krita.Krita, engine: FakeEngine, backend
) -> None:
    engine.step_delay = 0.03  # 20 steps x 30 ms: strokes arrive while a frame renders
    doc = new_doc(fake_krita)
    ctl.toggle_live()
    wait_until(lambda: ctl.live._in_flight, what="a frame in flight")
    for x in range(0, 48, 6):
        stroke(doc, x, 10 + x // 2)
        pump(0.05)
        assert ctl.live.frames_sent - ctl.live.frames_shown <= 1, "two frames in flight"
    settle(ctl)
    live = backend.app.state.live  # type: ignore[attr-defined]
    info = live.info(session_id(doc.rootNode().uniqueId().toString()))
    assert info is not None and info.superseded == 0  # the plugin never sends a stale frame
    assert info.frames == ctl.live.frames_shown < 8  # strokes were coalesced
    painted = bgra_array(doc.nodeByName("Background").pixelData(0, 0, SIZE, SIZE))
    shown = bgra_array(live_node(doc).pixelData(0, 0, SIZE, SIZE))
    assert np.array_equal(shown, expected_frame(painted, 42, ctl.live.strength))


def test_selection_limits_the_frame_to_the_selection(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita)
    selection = krita.Selection()
    selection.setPixelData(b"\xff" * (16 * 16), 24, 24, 16, 16)
    doc.setSelection(selection)
    ctl.toggle_live()
    settle(ctl)
    frame = ctl.live.frame
    assert frame is not None and frame.rect.width < SIZE  # the region, not the canvas
    assert frame.params.strength == ctl.live.strength  # the docker's 100 %: live's own
    ctl.update_settings(strength=0.3)  # below 100 %: the docker's strength drives live too
    wait_until(lambda: ctl.live.frame.params.strength == 0.3, what="a frame at strength 0.3")
    alpha = bgra_array(live_node(doc).pixelData(0, 0, SIZE, SIZE))[..., 3]
    assert (alpha[24:40, 24:40] == 255).all()
    assert alpha[:20].max() == 0 and alpha[44:].max() == 0


def test_live_stops_with_a_clear_error(ctl: Controller, fake_krita: krita.Krita) -> None:
    assert ctl.toggle_live() is False  # no document
    assert "document" in ctl.last_error.lower()
    doc = new_doc(fake_krita)
    ctl.update_settings(model="no-such-model")
    ctl.toggle_live()
    wait_until(lambda: not ctl.live.running, what="live mode to stop on the error")
    assert "no-such-model" in ctl.last_error
    assert live_node(doc) is None
    ctl.update_settings(model="")
    ctl.toggle_live()
    wait_until(lambda: ctl.live.frames_shown >= 1, what="a frame after the fix")
    fake_krita.close_document(doc)
    wait_until(lambda: not ctl.live.running, what="live mode to stop with its document")
    assert "closed" in ctl.live.last_error


def test_live_layer_in_a_group_is_found_and_a_refused_one_stops_live(
    ctl: Controller, fake_krita: krita.Krita, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = new_doc(fake_krita)
    group = doc.createNode("Folder", "grouplayer")
    doc.rootNode().addChildNode(group, None)
    inner = doc.createNode("Inner", "paintlayer")
    group.addChildNode(inner, None)
    doc.setActiveNode(inner)  # the [Live] layer goes into the group, above Inner
    ctl.toggle_live()
    wait_until(lambda: ctl.live.frames_shown >= 1, what="the first live frame")
    for x in (4, 24):  # later frames reuse it: still exactly one live layer
        inner.setPixelData(INK * 64, x, 30, 16, 4)  # a stroke on the active layer
        shown = ctl.live.frames_shown
        wait_until(lambda n=shown: ctl.live.frames_shown > n, what="a frame per stroke")
    lives = [n for n in doc.all_nodes() if n.name().startswith("[Live]")]
    assert len(lives) == 1 and lives[0].parentNode() is group
    ctl.toggle_live()
    assert [n for n in doc.all_nodes() if n.name().startswith("[Live]")] == []
    monkeypatch.setattr(krita.Node, "addChildNode", lambda self, child, above: False)
    ctl.toggle_live()
    wait_until(lambda: not ctl.live.running, what="live mode to stop")
    assert "Krita did not add the layer" in ctl.last_error


def test_live_protocol_mirror_matches_the_backend() -> None:
    from diffusion_layers import protocol as plugin_protocol

    from backend import protocol as backend_protocol

    minimal = {"width": 64, "height": 48}
    for name, data in (("LiveParams", minimal), ("LiveSessionInfo", {"session": "doc"})):
        plugin_dump = getattr(plugin_protocol, name).from_dict(data).to_dict()
        backend_model = getattr(backend_protocol, name)
        assert plugin_dump == backend_model.model_validate(data).model_dump(mode="json")
        assert backend_model.model_validate_json(getattr(plugin_protocol, name)
                                                 .from_dict(data).to_json()).model_dump() == plugin_dump  # fmt: skip
    assert plugin_protocol.LIVE_SESSION_PATTERN == backend_protocol.LIVE_SESSION_PATTERN
