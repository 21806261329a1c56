"""The history is recorded without blocking Krita's UI thread (issue 18 follow-up): results are
encoded on the recorder's worker thread and written back on the UI thread, in order, only into
documents still open; plugin shutdown writes what is under way. Also the docker's "Save as
style…" and "Delete style" dialogs (fake Krita, loopback v1 server)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import krita
import pytest
from diffusion_layers import history
from diffusion_layers.controller import Controller
from diffusion_layers.geometry import Rect
from diffusion_layers.history_recorder import HistoryRecorder
from diffusion_layers.krita_adapter import KritaDocument
from diffusion_layers.protocol import JobParams
from diffusion_layers.workflow import Workflow
from plugin_helpers import pump, wait_until
from test_plugin_controller import ctl, finish, new_doc, server  # noqa: F401
from test_plugin_workflow import connected
from v1_server import V1Server

PARAMS = JobParams(mode="txt2img", width=32, height=24, prompt="recorded", seed=1)


def entry(seed: int, width: int = 32, height: int = 24) -> history.NewEntry:
    return history.NewEntry(os.urandom(width * height * 4), Rect(3, 4, width, height), seed, PARAMS)


def gated(items: list[history.NewEntry], gate: threading.Event, ran: list[str]) -> Callable:
    def make() -> list[history.NewEntry]:
        ran.append(threading.current_thread().name)
        assert gate.wait(10)
        return items

    return make


def test_results_are_encoded_off_the_ui_thread_and_written_in_order(
    fake_krita: krita.Krita,
) -> None:
    doc = KritaDocument(new_doc(fake_krita))
    recorder = HistoryRecorder()
    gate, ran = threading.Event(), []
    jobs = [[entry(1), entry(2)], [entry(3)], [entry(4), entry(5), entry(6)]]
    began = time.monotonic()
    for items in jobs:  # three jobs in quick succession
        recorder.submit("k", doc, gated(items, gate, ran), 8)
    assert time.monotonic() - began < 0.05  # submit returns at once
    pump(0.1)
    assert history.load(doc).entries == [] and recorder.pending == 3  # nothing written yet
    gate.set()
    wait_until(lambda: recorder.pending == 0, what="the recorder")
    assert threading.main_thread().name not in ran
    kept = history.load(doc).entries
    assert [e.seed for e in kept] == [1, 2, 3, 4, 5, 6]
    assert sorted(e.slot for e in kept) == list(range(6))  # no two results share a slot
    expected = [item.pixels for items in jobs for item in items]
    assert [history.pixels_of(doc, e) for e in kept] == expected  # byte for byte


def test_a_document_closed_while_encoding_gets_no_write_and_others_keep_theirs(
    fake_krita: krita.Krita,
) -> None:
    closing, staying = new_doc(fake_krita), new_doc(fake_krita)
    gone, kept = KritaDocument(closing), KritaDocument(staying)
    recorder = HistoryRecorder()
    written: list[str] = []
    recorder.recorded.connect(written.append)
    gate, ran = threading.Event(), []
    recorder.submit("gone", gone, gated([entry(1)], gate, ran), 8)
    recorder.submit("kept", kept, gated([entry(2)], gate, ran), 8)
    pump(0.05)
    closing.close()
    assert not gone.is_open()
    annotations_before = list(closing.annotationTypes())
    gate.set()
    wait_until(lambda: recorder.pending == 0, what="the recorder")
    assert written == ["kept"]
    assert list(closing.annotationTypes()) == annotations_before  # nothing written after close
    assert [e.seed for e in history.load(kept).entries] == [2]


def test_shutdown_writes_the_work_under_way_into_open_documents(fake_krita: krita.Krita) -> None:
    doc = KritaDocument(new_doc(fake_krita))
    recorder = HistoryRecorder()
    gate, ran = threading.Event(), []
    recorder.submit("k", doc, gated([entry(7)], gate, ran), 8)
    threading.Timer(0.2, gate.set).start()
    recorder.shutdown()  # no event loop turn needed: waits, then writes
    assert recorder.pending == 0
    assert [e.seed for e in history.load(doc).entries] == [7]


def test_a_failed_encoding_gives_a_sentence_and_writes_nothing(fake_krita: krita.Krita) -> None:
    doc = KritaDocument(new_doc(fake_krita))
    recorder = HistoryRecorder()
    said: list[str] = []
    recorder.failed.connect(said.append)
    bad = history.NewEntry(b"\x00" * 10, Rect(0, 0, 32, 24), 1, PARAMS)  # wrong pixel count
    recorder.submit("k", doc, lambda: [bad], 8)
    wait_until(lambda: recorder.pending == 0, what="the recorder")
    assert said and said[0].startswith("The results could not be kept")
    assert history.load(doc).entries == []


def test_two_jobs_in_quick_succession_are_both_recorded_through_the_workflow(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    workflow = Workflow.of(ctl)
    new_doc(fake_krita)
    for seed in (11, 12):
        ctl.update_settings(seed=seed, batch=1)
        assert ctl.generate(), ctl.last_error
        finish(ctl)
    wait_until(lambda: workflow.recorder.pending == 0, what="the recorder")
    assert [e.seed for e in workflow.history().entries] == [11, 12]


# -- the docker's style dialogs ---------------------------------------------------------------


def test_save_as_style_and_delete_style_dialogs_in_the_docker(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusion_layers.ui import styles as ui_styles
    from diffusion_layers.ui.docker import DockerPanel

    new_doc(fake_krita)
    panel = DockerPanel(ctl)
    connected(ctl)
    row = panel.style_row
    answers = {"name": ("", True), "delete": ui_styles.QMessageBox.StandardButton.No}
    asked: list[str] = []

    class Input:
        @staticmethod
        def getText(*args: object) -> tuple:
            asked.append(str(args[1]))
            return answers["name"]

    class Box:
        StandardButton = ui_styles.QMessageBox.StandardButton

        @staticmethod
        def question(*args: object) -> object:
            asked.append(str(args[2]))
            return answers["delete"]

    monkeypatch.setattr(ui_styles, "QInputDialog", Input)
    monkeypatch.setattr(ui_styles, "QMessageBox", Box)
    sent = len(server.requests)
    row.save.click()  # an empty name: nothing sent
    answers["name"] = ("Docker look", False)
    row.save.click()  # cancelled: nothing sent
    pump(0.1)
    assert len(server.requests) == sent and asked == ["Save as style", "Save as style"]
    ctl.update_settings(steps=5)
    answers["name"] = ("Docker look", True)
    row.save.click()
    wait_until(lambda: "Docker look" in server.styles, what="the PUT from the dialog")
    assert server.styles["Docker look"]["steps"] == 5
    wait_until(lambda: ctl.settings.style == "Docker look", what="the saved style picked")
    wait_until(lambda: row.delete.isEnabled(), what="Delete enabled for a user style")
    row.delete.click()  # answered No: kept
    pump(0.1)
    assert "Docker look" in server.styles and "Delete the style 'Docker look'" in asked[-1]
    answers["delete"] = Box.StandardButton.Yes
    row.delete.click()
    wait_until(lambda: "Docker look" not in server.styles, what="the DELETE from the dialog")
    wait_until(lambda: ctl.settings.style == "", what="the deleted style unpicked")
    answers["name"] = ("Base", True)  # a built-in's name: refused with a sentence, not sent
    sent = len(server.requests)
    row.save.click()
    pump(0.1)
    assert len(server.requests) == sent and "built-in" in row.message.text()


@pytest.mark.parametrize(("width", "height"), [(70, 150), (33, 64), (1, 129)])
def test_band_clipping_matches_the_layer_the_result_becomes(width: int, height: int) -> None:
    from diffusion_layers import results as results_mod
    from diffusion_layers.history_recorder import clipped
    from diffusion_layers.protocol import ResultInfo
    from diffusion_layers.results import Result

    region = Rect(2, 3, width + 9, height + 7)
    mask = bytes(b if b > 80 else 0 for b in os.urandom(region.width * region.height))
    rect = Rect(5, 6, width, height)
    info = ResultInfo(0, 1, 0, 0, width, height, "", "")
    item = Result(info, os.urandom(width * height * 4), rect)
    layer = results_mod.new_layer(item, PARAMS, region, mask).pixels
    assert clipped(item.pixels, rect, region, mask) == layer
    assert layer[3::4].count(0) > 0 and clipped(item.pixels, rect, region, None) == item.pixels


def test_the_history_list_and_preview_show_thumbnails_and_decode_no_full_picture(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusion_layers.ui.history import PREVIEW_SIDE, HistoryPanel

    workflow = Workflow.of(ctl)
    new_doc(fake_krita)
    panel = HistoryPanel(ctl)
    decoded: list[str] = []
    real = history.pixels_of

    def pixels_of(doc: object, item: history.Entry) -> bytes:
        decoded.append(item.id)
        return real(doc, item)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "pixels_of", pixels_of)
    for seed in (21, 22):
        ctl.update_settings(seed=seed, batch=1)
        assert ctl.generate(), ctl.last_error
        finish(ctl)
    wait_until(lambda: workflow.recorder.pending == 0, what="the recorder")
    pump(0.05)
    assert panel.list.count() == 2 and panel.selected() is not None
    assert panel.list.item(0).text() == "#22"  # newest first; the first pick stays selected
    assert panel.selected().seed == 21  # type: ignore[union-attr]
    panel.list.setCurrentRow(0)  # the artist picks the newest
    assert panel.selected().seed == 22  # type: ignore[union-attr]
    pixmap = panel.preview.pixmap()
    assert pixmap is not None and not pixmap.isNull()
    assert max(pixmap.width(), pixmap.height()) <= PREVIEW_SIDE
    assert decoded == []  # listing and previewing never decode a full picture
    picked = panel.selected()
    assert picked is not None
    assert workflow.picture(picked.id) is not None and decoded == [picked.id]  # only on demand
