"""A large result lands in its preview strip by strip (issue #15: Krita stays responsive).

A result of more than one strip (``turns.STRIP_PIXELS``) is written into a layer outside the
tree, one strip per event-loop turn, and joins the tree only when complete. Cancel, closing
the document or changing the canvas while it lands leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import krita
import pytest
from diffusion_layers.controller import Controller
from diffusion_layers.turns import STRIP_PIXELS, strip_rows
from plugin_helpers import pump, wait_until
from test_plugin_controller import ctl, new_doc, server  # noqa: F401
from v1_server import V1Server, result_color

WIDTH, HEIGHT = 1024, 640  # 655,360 px: two strips of 512 and 128 rows


def previews(doc: krita.Document) -> list[krita.Node]:
    return [n for n in doc.all_nodes() if n.name().startswith("[Preview]")]


def record_writes(monkeypatch: pytest.MonkeyPatch, during: Callable[[int], None] = lambda _n: None):
    """Every setPixelData on a preview node: (rows, in the tree then); ``during(n)`` runs
    after the n-th such write (n from 1)."""
    writes: list[tuple[int, bool]] = []
    original = krita.Node.setPixelData

    def recording(node: krita.Node, value: Any, x: int, y: int, w: int, h: int) -> bool:
        done = original(node, value, x, y, w, h)
        if node.name().startswith("[Preview]"):
            writes.append((h, node.parentNode() is not None))
            during(len(writes))
        return done

    monkeypatch.setattr(krita.Node, "setPixelData", recording)
    return writes


def test_a_large_result_is_written_in_strips_and_shown_only_when_complete(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert WIDTH * HEIGHT > STRIP_PIXELS
    doc = new_doc(fake_krita, size=(WIDTH, HEIGHT))
    states: list[str] = []
    writes = record_writes(monkeypatch, lambda _n: states.append(ctl.state))
    assert ctl.generate(), ctl.last_error
    wait_until(lambda: ctl.state != "generating", what="the preview")
    assert ctl.state == "preview", ctl.last_error
    rows = strip_rows(WIDTH)
    assert writes == [(rows, False), (HEIGHT - rows, False)]  # strips, outside the tree
    assert states == ["generating", "generating"]  # no Apply before it is all there
    (preview,) = previews(doc)
    assert preview.locked() and preview.parentNode() is doc.rootNode()
    assert bytes(preview.pixelData(0, 0, WIDTH, HEIGHT)) == result_color(0) * (WIDTH * HEIGHT)
    assert doc.activeNode() is not None and doc.activeNode().name() == "Background"
    applied = ctl.apply()
    assert applied is not None and ctl.state == "idle" and previews(doc) == []


def test_cancel_while_a_large_result_lands_leaves_nothing(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = new_doc(fake_krita, size=(WIDTH, HEIGHT))
    before = [n.name() for n in doc.all_nodes()]
    writes = record_writes(monkeypatch, lambda n: n == 1 and ctl.cancel())
    assert ctl.generate(), ctl.last_error
    wait_until(lambda: ctl.state != "generating", what="the cancel")
    pump(0.3)  # the strips' turns would have run by now
    assert ctl.state == "idle" and not ctl.last_error and ctl.results == []
    assert len(writes) == 1 and previews(doc) == []
    assert [n.name() for n in doc.all_nodes()] == before
    assert ctl.generate(), ctl.last_error  # the document is free for the next job
    wait_until(lambda: ctl.state != "generating", what="the next preview")
    assert ctl.state == "preview" and len(previews(doc)) == 1


def test_closing_the_document_while_a_large_result_lands_drops_it_quietly(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = new_doc(fake_krita, size=(WIDTH, HEIGHT))
    key = doc.rootNode().uniqueId().toString()
    other = new_doc(fake_krita)
    writes = record_writes(monkeypatch, lambda n: n == 1 and doc.close())
    fake_krita.set_active(doc)
    assert ctl.generate(), ctl.last_error
    wait_until(lambda: len(writes) >= 1 and ctl.sessions.get(key) is None, what="the drop")
    pump(0.3)
    assert len(writes) == 1  # nothing written into the closed document
    fake_krita.set_active(other)
    assert ctl.state == "idle" and not ctl.last_error


def test_a_canvas_cropped_while_a_large_result_lands_refuses_it(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = new_doc(fake_krita, size=(WIDTH, HEIGHT))
    record_writes(monkeypatch, lambda n: n == 1 and doc.crop(0, 0, WIDTH // 2, HEIGHT))
    assert ctl.generate(), ctl.last_error
    wait_until(lambda: ctl.state != "generating", what="the refusal")
    assert ctl.state == "error" and "cropped or resized" in ctl.last_error, ctl.last_error
    assert previews(doc) == []


@pytest.mark.parametrize("size", [(64, 64), (WIDTH, HEIGHT)])
def test_a_result_lands_only_when_no_stroke_runs_and_a_crop_meanwhile_refuses_it(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    size: tuple[int, int],
) -> None:
    """Krita changes the canvas size only when a crop's stroke ends: a result waits until the
    image is idle (tryBarrierLock), so the canvas check sees the canvas it would land on."""
    doc = new_doc(fake_krita, size=size)
    doc.busy = True  # the artist paints, or a crop runs
    assert ctl.generate(), ctl.last_error
    wait_until(lambda: bool(server.jobs) and server.last_job().state == "done", what="the job")
    pump(0.4)
    assert ctl.state == "generating" and previews(doc) == []
    doc.crop(0, 0, size[0] // 2, size[1])
    doc.busy = False
    wait_until(lambda: ctl.state != "generating", what="the refusal")
    assert ctl.state == "error" and "cropped or resized" in ctl.last_error, ctl.last_error
    assert previews(doc) == [] and not doc.barrier_locked


def test_a_large_result_waits_for_the_artists_stroke_then_lands(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, size=(WIDTH, HEIGHT))
    doc.busy = True
    assert ctl.generate(), ctl.last_error
    wait_until(lambda: bool(server.jobs) and server.last_job().state == "done", what="the job")
    pump(0.4)
    assert ctl.state == "generating" and previews(doc) == []
    doc.busy = False
    wait_until(lambda: ctl.state != "generating", what="the preview")
    assert ctl.state == "preview" and len(previews(doc)) == 1
