"""Issue 18, plugin half: styles, reference layers, inline LoRA marks and the lossless history,
with the fake ``krita`` against the loopback v1 server (which serves /v1/styles)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import krita
import pytest
from diffusion_layers import history, styles
from diffusion_layers import protocol as plugin_protocol
from diffusion_layers.controller import Controller
from diffusion_layers.errors import InvalidSetting
from diffusion_layers.geometry import Rect
from diffusion_layers.krita_adapter import KritaDocument
from diffusion_layers.protocol import JobParams, LiveParams, ModelsInfo, Style
from diffusion_layers.request import params_part
from diffusion_layers.settings import DEFAULT_HISTORY_MB, DictStore, PluginSettings
from diffusion_layers.workflow import Workflow
from plugin_helpers import wait_until
from qt_binding import QtWidgets
from test_plugin_controller import ctl, finish, new_doc, select, server  # noqa: F401
from v1_server import V1Server

SIZE = 64


def connected(ctl: Controller) -> Workflow:  # noqa: F811
    workflow = Workflow.of(ctl)
    ctl.connect_server()
    wait_until(lambda: bool(workflow.styles), what="the server's styles")
    return workflow


def job_json(server: V1Server) -> dict:  # noqa: F811
    return server.last_job().params


# -- styles ----------------------------------------------------------------------------------


def test_picking_a_style_loads_its_values_and_the_job_leaves_them_to_the_server(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    workflow = connected(ctl)
    assert Workflow.of(ctl) is workflow  # one per controller
    new_doc(fake_krita)
    workflow.pick_style("Base")
    s = ctl.settings
    assert (s.style, s.model, s.steps, s.cfg_scale, s.negative_prompt) == (
        "Base",
        "tiny",
        3,
        5.0,
        "",
    )
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    sent = job_json(server)
    assert sent["style"] == "Base" and sent["prompt"] == "a red fox"
    for key in ("model", "steps", "cfg_scale", "clip_skip", "vae"):
        assert key not in sent, key  # the server's style decides (present would win)
    assert sent["negative_prompt"] == ""  # the artist's addition to the style's negative
    assert sent["sampler"] == s.sampler  # the style sets no sampler: the artist's is sent
    # A value changed under "Advanced" overrides the style for that value only.
    ctl.update_settings(steps=4)
    assert styles.overridden(ctl.settings) == ["steps"]
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    sent = job_json(server)
    assert sent["steps"] == 4 and "cfg_scale" not in sent and sent["style"] == "Base"
    # No style: everything is sent, "style" is null.
    workflow.pick_style("")
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    sent = job_json(server)
    assert sent["style"] is None and sent["steps"] == 4 and sent["cfg_scale"] == 5.0
    assert sent["clip_skip"] == 1 and "vae" in sent


def test_live_frames_leave_the_live_settings_to_the_style() -> None:
    settings = PluginSettings(
        style="Base", model="tiny", style_values={"model": "tiny", "steps": 3}
    )
    params = LiveParams(width=8, height=8, prompt="p", model="tiny", style="Base")
    sent = json.loads(params_part(params, styles.live_omitted(settings)).data)
    assert sent["style"] == "Base" and sent["prompt"] == "p"
    for key in ("model", "sampler", "steps", "cfg_scale", "clip_skip", "vae"):
        assert key not in sent, key
    settings.model = "other"  # changed under Advanced: sent, it wins
    assert json.loads(params_part(params, styles.live_omitted(settings)).data)["model"] == "tiny"
    assert styles.live_omitted(PluginSettings()) == []  # no style: everything sent


def test_a_style_whose_checkpoints_are_not_installed_leaves_the_model_alone() -> None:
    models = ModelsInfo.from_dict(
        {"checkpoints": [{"name": "b", "family": "sd15", "inpaint": False}]}
    )
    style = Style(name="X", checkpoints=["a", "b"], steps=9)
    assert styles.pick(style, models)["model"] == "b"  # first installed fallback
    assert "model" not in styles.pick(Style(name="Y", checkpoints=["a"]), models)
    assert "not installed" in styles.describe(Style(name="Y", checkpoints=["a"]), models)


def test_save_as_style_and_delete_style_through_the_server(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
) -> None:
    workflow = connected(ctl)
    workflow.pick_style("Base")
    ctl.update_settings(steps=7, loras=[])
    assert workflow.save_style("My look 2")
    wait_until(lambda: "My look 2" in server.styles, what="the PUT")
    saved = server.styles["My look 2"]
    assert saved["steps"] == 7 and saved["checkpoints"] == ["tiny"]
    assert saved["prompt"] == "masterpiece, {prompt}"  # the picked style's template is kept
    assert saved["loras"] == [{"name": "film", "weight": 0.5}]
    wait_until(lambda: ctl.settings.style == "My look 2", what="the saved style picked")
    assert ("PUT", "/v1/styles/My%20look%202") in server.requests
    assert workflow.delete_style("My look 2")
    wait_until(lambda: "My look 2" not in server.styles, what="the DELETE")
    wait_until(lambda: ctl.settings.style == "", what="the deleted style unpicked")
    # Built-ins are read-only; bad names never reach the server.
    sent = len(server.requests)
    assert not workflow.delete_style("Base") and "built-in" in workflow.message
    assert not workflow.save_style("Base") and "built-in" in workflow.message
    assert not workflow.save_style("a/b") and "'a/b'" in workflow.message
    assert not workflow.save_style("x" * 81)
    assert len(server.requests) == sent


@pytest.mark.parametrize("name", ["", " ", "a/b", "é", "x" * 81, "a\nb"])
def test_style_names_the_server_refuses_are_refused_first(name: str) -> None:
    with pytest.raises(InvalidSetting, match="Style name"):
        styles.check_name(name)


# -- prompt syntax: inline LoRAs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "unknown"),
    [
        ("a fox <lora:film.safetensors:0.8>", []),
        ("a fox <lora:sub/film.safetensors>", []),  # the exact name
        ("a fox <lora:grain.safetensors:0.5>", []),  # the file name of exactly one LoRA
        ("a fox <lora:film:0.8>", ["film"]),  # no extension: the server does not match it
        ("a fox <lora:nope:0.8>, <lyco:film.safetensors:1>", ["nope"]),
        ("<LORA:Nope2:0.5> (fox:1.2) [cat] {a|b}", ["Nope2"]),
        ("a fox # <lora:nope:0.8> is only a comment\n<lyco:gone:1>", ["gone"]),
        ("a \\# <lora:hash:1> is not a comment", ["hash"]),
        ("<lora:dup.safetensors>", ["dup.safetensors"]),  # two LoRAs have that file name
    ],
)
def test_unknown_inline_lora_names_are_found(prompt: str, unknown: list) -> None:
    known = ["film.safetensors", "sub/film.safetensors", "x/grain.safetensors"]
    assert (
        styles.unknown_loras(prompt, known + ["a/dup.safetensors", "b/dup.safetensors"]) == unknown
    )


def test_generate_refuses_an_unknown_inline_lora_with_a_sentence(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    connected(ctl)
    new_doc(fake_krita)
    ctl.update_settings(prompt="a fox <lora:nope:0.8>")
    assert not ctl.generate()
    assert "'nope'" in ctl.last_error and "does not have" in ctl.last_error
    ctl.update_settings(prompt="a fox", negative_prompt="<lora:bad:1>")
    assert not ctl.generate() and "negative prompt names LoRA 'bad'" in ctl.last_error
    ctl.update_settings(negative_prompt="")
    assert not server.jobs
    ctl.update_settings(prompt="a fox <lora:film:0.8>")
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    assert job_json(server)["prompt"] == "a fox <lora:film:0.8>"


# -- reference layers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reference", "style", "composition", "face"])
def test_any_layer_is_a_reference_with_weight_and_range(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    kind: str,
) -> None:
    doc = new_doc(fake_krita)
    ref = doc.createNode("Ref", "paintlayer")
    doc.rootNode().addChildNode(ref, None)
    ref.setPixelData(bytes([9, 8, 7, 255]) * (SIZE * SIZE), 0, 0, SIZE, SIZE)
    doc.setActiveNode(ref)
    assert ctl.add_active_layer_as_control(kind), ctl.last_error
    control = ctl.controls.current()[0]
    control.strength, control.start, control.end = 0.6, 0.1, 0.8
    ctl.controls.set([control])
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    sent = job_json(server)["controls"]
    assert sent == [
        {"type": kind, "image": "control_0", "model": None, "strength": 0.6, "start": 0.1,
         "end": 0.8, "preprocess": True}
    ]  # fmt: skip
    assert server.last_job().parts["control_0"][1] == bytes([9, 8, 7, 255]) * (SIZE * SIZE)
    # A reference has no map to preprocess: a sentence, nothing sent.
    assert not ctl.preprocess_to_layer(kind, ref.uniqueId().toString())
    assert "no map to preprocess" in ctl.last_error


# -- history ---------------------------------------------------------------------------------


def test_every_result_is_kept_losslessly_and_applied_again_byte_exactly(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    workflow = Workflow.of(ctl)
    doc = new_doc(fake_krita, fill=bytes([50, 60, 70, 255]))
    select(doc, 10, 12, 30, 20)
    ctl.update_settings(batch=2)
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    wait_until(lambda: workflow.recorder.pending == 0, what="the history written")
    entries = workflow.history().newest_first()
    assert [e.seed for e in entries] == [43, 42]  # newest first: the batch's second is newer
    assert all(e.prompt == "a red fox" and e.params["batch"] == 2 for e in entries)
    applied_id = ctl.apply()
    assert applied_id
    applied = next(n for n in doc.all_nodes() if n.uniqueId().toString() == applied_id)
    first = entries[1]
    r = first.rect  # the result's rectangle (the selection with context around it)
    assert r.x <= 10 and r.y <= 12 and r.x + r.width >= 40 and r.y + r.height >= 32
    exact = bytes(applied.pixelData(r.x, r.y, r.width, r.height))
    assert exact[3::4].count(0) > 0  # clipped to the selection: the layer's very pixels
    assert workflow.picture(first.id) == exact
    doc.setActiveNode(doc.nodeByName("Background"))
    again_id = workflow.apply_again(first.id)
    assert again_id and again_id != applied_id
    again = next(n for n in doc.all_nodes() if n.uniqueId().toString() == again_id)
    assert bytes(again.pixelData(r.x, r.y, r.width, r.height)) == exact
    assert bytes(again.pixelData(0, 0, SIZE, SIZE)) == bytes(applied.pixelData(0, 0, SIZE, SIZE))
    # Reuse all parameters: the job again, its seed fixed, everything sent explicitly.
    ctl.update_settings(prompt="other", steps=9, batch=1, seed=-1)
    assert workflow.reuse(first.id)
    s = ctl.settings
    assert (s.prompt, s.steps, s.batch, s.seed, s.style_values) == ("a red fox", 2, 2, 42, {})


def test_history_is_bounded_oldest_first_with_a_note(fake_krita: krita.Krita) -> None:
    doc = KritaDocument(new_doc(fake_krita))
    params = JobParams(mode="txt2img", width=300, height=300, prompt="noise", seed=1)
    rect = Rect(5, 6, 300, 300)

    def noise() -> history.NewEntry:
        return history.NewEntry(os.urandom(300 * 300 * 4), rect, 1, params)  # ~360 KB of PNG

    kept = [history.record(doc, [noise()], 1) for _ in range(2)][-1]
    assert len(kept.entries) == 2 and not kept.note
    pictures = [history.pixels_of(doc, e) for e in kept.entries]
    after = history.record(doc, [noise(), noise()], 1)
    assert len(after.entries) == 2 and after.dropped == 2
    assert "2 older results have been dropped so far" in after.note
    assert history.size(after) <= history.MB
    # The dropped entries' slots were emptied (the next results reuse them).
    assert sorted(e.slot for e in after.entries) == [2, 3]
    types = [history.PICTURE_PREFIX + str(n) for n in range(4)]
    assert [bool(doc.read_annotation(t)) for t in types] == [False, False, True, True]
    # Every kept picture reads back, and the dropped ones are gone.
    readable = [history.pixels_of(doc, e) for e in after.entries]
    assert all(len(p) == 300 * 300 * 4 for p in readable)
    assert not set(readable) & set(pictures)
    # The history survives in the document (a new wrapper reads the same annotations).
    again = history.load(KritaDocument(doc._doc))
    assert [e.id for e in again.entries] == [e.id for e in after.entries]
    assert again.note == after.note
    history.clear_note(doc)
    assert history.load(doc).note == "" and len(history.load(doc).entries) == 2
    # A picture larger than the limit is not kept at all.
    reused = history.record(doc, [noise()], 1)
    assert [e.slot for e in reused.entries] == [3, 0]  # the lowest free slot
    huge = history.record(doc, [noise()], 0)
    # The note counts every result dropped from the document, not only the last pruning.
    assert huge.dropped == 6 and huge.entries == [] and " 6 older results " in huge.note
    assert all(not doc.read_annotation(t) for t in types)  # emptied: nothing left in the .kra


def test_a_damaged_history_picture_gives_a_sentence(fake_krita: krita.Krita) -> None:
    doc = KritaDocument(new_doc(fake_krita))
    params = JobParams(mode="txt2img", width=4, height=4)
    kept = history.record(
        doc, [history.NewEntry(b"\x01\x02\x03\xff" * 16, Rect(0, 0, 4, 4), 7, params)], 8
    )
    doc.write_annotation(kept.entries[0].picture_type, "x", b"garbage")
    with pytest.raises(history.HistoryUnreadable, match="output folder"):
        history.pixels_of(doc, kept.entries[0])
    doc.write_annotation(history.INDEX_TYPE, "x", b"{not json")
    assert history.load(doc).entries == []


def test_new_settings_round_trip_through_the_store() -> None:
    store = DictStore()
    s = PluginSettings(style="Base", style_values={"steps": 3}, history_limit_mb=12)
    s.save(store)
    loaded = PluginSettings.load(store)
    assert (loaded.style, loaded.style_values, loaded.history_limit_mb) == (
        "Base",
        {"steps": 3},
        12,
    )
    store.write("style_values", "[1]")
    store.write("history_limit_mb", "lots")
    loaded = PluginSettings.load(store)
    assert loaded.style_values == {} and loaded.history_limit_mb == DEFAULT_HISTORY_MB == 32
    with pytest.raises(InvalidSetting, match="history_limit_mb"):
        PluginSettings(history_limit_mb=-1).check()


# -- the docker ------------------------------------------------------------------------------


def test_docker_style_first_advanced_folds_marks_loras_and_lists_history(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.ui.docker import DockerPanel

    new_doc(fake_krita)
    panel = DockerPanel(ctl)
    workflow = connected(ctl)
    layout = panel.layout_
    order = [layout.itemAt(i).widget() for i in range(layout.count())]
    assert order.index(panel.style_row) < order.index(panel.prompt) < order.index(panel.advanced)
    for widget in (panel.model, panel.negative, panel.steps, panel.cfg, panel.sampler, panel.loras):
        assert panel.advanced.body.isAncestorOf(widget)  # what a style sets is under Advanced
    wait_until(lambda: panel.style_row.combo.count() == 2, what="the style list in the docker")
    assert panel.style_row.combo.itemText(1) == "Base (built-in)"
    assert panel.advanced.is_open  # no style: everything in view
    workflow.pick_style("Base")
    wait_until(lambda: not panel.advanced.is_open, what="Advanced folded")
    assert not panel.style_row.delete.isEnabled()  # built-ins are read-only
    assert "film 0.5" in panel.style_row.summary.text()
    panel.prompt.setPlainText("a fox <lora:nope:1>")
    assert panel.lora_marks.isVisibleTo(panel) and "nope" in panel.lora_marks.text()
    panel.prompt.setPlainText("a fox <lora:film:1>")
    assert not panel.lora_marks.isVisibleTo(panel)
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    wait_until(lambda: panel.history.list.count() == 1, what="the history list")
    assert panel.history.apply_again.isEnabled()
    assert "style Base" in panel.history.details.text()
    assert json.loads(json.dumps(server.last_job().params))["style"] == "Base"
    # A reference control in the control list: its own label, weight, no preprocessing.
    doc = fake_krita.activeDocument()
    ref = doc.createNode("Ref", "paintlayer")
    doc.rootNode().addChildNode(ref, None)
    doc.setActiveNode(ref)
    assert ctl.add_active_layer_as_control("face"), ctl.last_error
    panel.refresh()
    row = panel.controls.rows.itemAt(0).widget()
    combo = row.findChild(QtWidgets.QComboBox)
    assert combo.currentText() == "Reference (face)"
    buttons = {b.text(): b.isEnabled() for b in row.findChildren(QtWidgets.QPushButton)}
    assert buttons == {"Preprocess to layer": False, "Remove": True}
    spins = [w.prefix() for w in row.findChildren(QtWidgets.QDoubleSpinBox)]
    assert spins == ["weight ", "start ", "end "]


# -- protocol fixtures (both sides) ------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocol"


def _backend_model(name: str):
    """A contract model of backend/protocol.py or backend/protocol_models.py (/v1/models)."""
    protocol = pytest.importorskip("backend.protocol")
    models = pytest.importorskip("backend.protocol_models")
    return getattr(protocol, name, None) or getattr(models, name)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("styles_list.json", "StylesList"),
        ("job_params_style_reference.json", "JobParams"),
        ("models_ipadapters.json", "ModelsInfo"),
    ],
)
def test_style_and_reference_fixtures_round_trip_on_both_sides(name: str, cls: str) -> None:
    text = (FIXTURES / name).read_text()
    plugin_obj = getattr(plugin_protocol, cls).from_json(text)
    data, dumped = json.loads(text), plugin_obj.to_dict()
    assert {k: dumped.get(k) for k in data} == data  # every field mirrored, nothing lost
    model = _backend_model(cls)
    backend_obj = model.model_validate_json(text)
    assert model.model_validate_json(plugin_obj.to_json()) == backend_obj
    assert getattr(plugin_protocol, cls).from_json(backend_obj.model_dump_json()) == plugin_obj


def test_style_mirror_matches_the_backend() -> None:
    backend = pytest.importorskip("backend.protocol")
    for cls in ("Style", "StylesList", "IPAdapterInfo"):
        assert set(getattr(plugin_protocol, cls).__dataclass_fields__) == set(
            _backend_model(cls).model_fields
        ), cls
    default = plugin_protocol.Style(name="x").to_dict()
    assert default == backend.Style(name="x").model_dump(mode="json")
    assert plugin_protocol.STYLE_NAME_PATTERN == backend.STYLE_NAME_PATTERN
    assert plugin_protocol.REFERENCE_TYPES == tuple(backend.REFERENCE_TYPES)


def test_history_note_counts_every_dropped_result(fake_krita: krita.Krita) -> None:
    # QA: four ~0.4 MB results one at a time under 1 MB: the note must follow the count.
    doc = KritaDocument(new_doc(fake_krita))
    params = JobParams(mode="txt2img", width=300, height=300, prompt="noise", seed=1)
    entry = history.NewEntry(os.urandom(300 * 300 * 4), Rect(0, 0, 300, 300), 1, params)
    notes = [history.record(doc, [entry], 1).note for _ in range(5)]
    assert notes[:2] == ["", ""]
    assert " 1 older result has been dropped so far," in notes[2]
    assert " 2 older results have been dropped so far," in notes[3]
    assert " 3 older results have been dropped so far," in notes[4]
    assert history.load(doc).dropped == 3
