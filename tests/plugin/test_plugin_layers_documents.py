"""Layers, documents and per-document state (issue 12, kinds 4-8) with the fake ``krita``:
every layer type as a control source, where results land whatever the active node, the
preview under undo/redo and layer operations, state per document, closing documents.

The fake models what real Krita does here (see tests/krita_e2e/test_krita_layers.py for the
same rules in Krita 5.1.5): groups have no pixels of their own (``pixelData`` is empty) but a
projection, masks only go on layers, a paint layer cannot take a child layer, adding a layer
makes it active, and adding/removing layers are undo steps (``Document.undo``/``redo``).
"""

from __future__ import annotations

import json

import krita
import pytest
from diffusion_layers.controller import Controller
from diffusion_layers.krita_adapter import KritaDocument
from plugin_helpers import pump, wait_until
from test_plugin_controller import ctl, new_doc, server  # noqa: F401
from v1_server import V1Server

RED = bytes([0, 0, 255, 255])
SIZE = 64


def finish(ctl: Controller, state: str = "preview") -> None:  # noqa: F811
    wait_until(lambda: ctl.state != "generating", what="the job to end")
    assert ctl.state == state, ctl.last_error


def paint(node: krita.Node, x: int, y: int, w: int, h: int, colour: bytes = RED) -> None:
    node.setPixelData(colour * (w * h), x, y, w, h)


def add(doc: krita.Document, parent: krita.Node, name: str, kind: str = "paintlayer"):
    node = doc.createNode(name, kind)
    assert parent.addChildNode(node, None)
    return node


def previews(doc: krita.Document) -> list[krita.Node]:
    return [n for n in doc.all_nodes() if n.name().startswith(("[Preview]", "[Live]"))]


def position(node: krita.Node) -> tuple[str, int]:
    parent = node.parentNode()
    assert parent is not None
    return parent.name(), parent.childNodes().index(node)


# -- kind 4: any layer is a control source, as it looks -------------------------------------


@pytest.mark.parametrize("kind", ["grouplayer", "vectorlayer", "clonelayer", "filllayer",
                                  "filelayer", "filterlayer"])  # fmt: skip
def test_every_layer_type_is_a_control_source_as_it_renders(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    kind: str,
) -> None:
    doc = new_doc(fake_krita)
    root = doc.rootNode()
    if kind == "grouplayer":
        source = add(doc, root, "grp", "grouplayer")
        paint(add(doc, source, "child"), 8, 8, 20, 20)
    else:
        source = add(doc, root, "src", kind)
        paint(source, 8, 8, 20, 20)  # stands for what the layer renders
    assert len(bytes(source.pixelData(0, 0, SIZE, SIZE))) in (0, SIZE * SIZE * 4)
    doc.setActiveNode(source)
    assert ctl.add_active_layer_as_control("scribble"), ctl.last_error
    doc.setActiveNode(doc.nodeByName("Background"))
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    sent = server.last_job().parts["control_0"][1]
    expected = bytes(source.projectionPixelData(0, 0, SIZE, SIZE))
    assert sent == expected
    assert bytes(sent)[3::4].count(255) == 400


def test_sources_that_cannot_render_get_a_sentence_and_nothing_is_sent(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    root = doc.rootNode()
    hidden = add(doc, root, "Hidden")
    paint(hidden, 0, 0, 10, 10)
    group = add(doc, root, "Folder", "grouplayer")
    inner = add(doc, group, "Inner")
    paint(inner, 0, 0, 10, 10)
    empty = add(doc, root, "Empty")
    cases = [
        (hidden, hidden, "Control layer 'Hidden' is hidden"),
        (inner, group, "inside the hidden group 'Folder'"),
        (empty, None, "Control layer 'Empty' is empty where the image is generated"),
    ]
    for node, hide, words in cases:
        ctl.controls.set([])
        doc.setActiveNode(node)
        assert ctl.add_active_layer_as_control()
        if hide is not None:
            hide.setVisible(False)
        jobs = len(server.jobs)
        assert not ctl.generate()
        assert words in ctl.last_error and "bytes" not in ctl.last_error, ctl.last_error
        assert len(server.jobs) == jobs
    layer = add(doc, root, "Paint")
    mask = doc.createNode("Blur", "filtermask")
    assert layer.addChildNode(mask, None)
    doc.setActiveNode(mask)
    ctl.controls.set([])
    assert not ctl.add_active_layer_as_control()
    assert "'Blur' is a filter mask, not a layer" in ctl.last_error
    assert ctl.controls.current() == []


# -- kind 5: results always land somewhere valid --------------------------------------------


@pytest.mark.parametrize("mask_type", ["filtermask", "transparencymask", "selectionmask"])
def test_with_a_mask_active_preview_and_result_go_above_its_layer(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    mask_type: str,
) -> None:
    doc = new_doc(fake_krita)
    paint_layer = add(doc, doc.rootNode(), "Paint")
    add(doc, doc.rootNode(), "Top")
    mask = doc.createNode("mask", mask_type)
    assert paint_layer.addChildNode(mask, None)
    doc.setActiveNode(mask)
    assert ctl.generate()
    finish(ctl)
    (preview,) = previews(doc)
    assert position(preview) == ("root", 2)  # right above Paint, below Top
    assert doc.activeNode() is mask  # the artist's active node is kept
    layer_id = ctl.apply()
    assert layer_id and not ctl.last_error
    assert [n.name() for n in doc.rootNode().childNodes()] == [
        "Background", "Paint", "a red fox #42", "Top"
    ]  # fmt: skip


def test_inside_a_locked_group_the_result_goes_above_the_group(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    outer = add(doc, doc.rootNode(), "Outer", "grouplayer")
    inner_group = add(doc, outer, "Inner", "grouplayer")
    layer = add(doc, inner_group, "Deep")
    outer.setLocked(True)
    doc.setActiveNode(layer)
    assert ctl.generate()
    finish(ctl)
    (preview,) = previews(doc)
    assert position(preview) == ("root", 2)
    outer.setLocked(False)
    inner_group.setLocked(True)  # now only the inner group is locked
    ctl.discard()
    ctl.show_result(0)
    (preview,) = previews(doc)
    assert position(preview) == ("Outer", 1)


def test_a_layer_krita_refuses_to_add_is_an_error_in_the_docker(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = new_doc(fake_krita)
    monkeypatch.setattr(krita.Node, "addChildNode", lambda self, child, above: False)
    assert ctl.generate()
    finish(ctl, "error")
    assert "Krita did not add the layer" in ctl.last_error
    assert previews(doc) == []


def test_a_preview_whose_pixels_cannot_be_written_is_not_left_empty(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusion_layers import colour_io
    from diffusion_layers.errors import UnsupportedDocument

    def refuse(*_args: object) -> None:
        raise UnsupportedDocument("Krita could not convert the result to CMYKA/U8.")

    doc = new_doc(fake_krita)
    monkeypatch.setattr(colour_io, "from_srgb8", refuse)  # every write converts through it
    assert ctl.generate()
    finish(ctl, "error")
    assert "could not convert" in ctl.last_error
    assert previews(doc) == []


# -- kind 6: the preview never becomes the artist's -----------------------------------------


def test_the_artists_layer_stays_active_and_undo_never_leaves_a_preview(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    sketch = add(doc, doc.rootNode(), "sketch")
    doc.setActiveNode(sketch)
    assert ctl.generate()
    finish(ctl)
    wait_until(lambda: doc.activeNode() is sketch, 2, "sketch active again")
    layer_id = ctl.apply()
    assert layer_id and ctl.state == "idle"
    for _ in range(2):  # Ctrl+Z twice: the applied layer goes, then the sketch
        doc.undo()
        assert previews(doc) == [] and ctl.state == "idle"
    assert doc.redo() and doc.redo()
    assert previews(doc) == [] and doc.nodeByName("a red fox #42") is not None


def test_an_artists_layer_removed_before_the_next_turn_is_never_made_active(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Krita activates a new layer, sometimes after the call returns, so the plugin gives the
    artist's layer back on the next turn too; a layer deleted meanwhile is left alone (real
    Krita answers setActiveNode on a node outside the tree with a SAFE ASSERT, which the fake
    records and the fixture fails on)."""
    doc = new_doc(fake_krita)
    sketch = add(doc, doc.rootNode(), "sketch")
    doc.setActiveNode(sketch)
    original = KritaDocument.show_preview

    def then_delete_the_sketch(self: KritaDocument, *args: object, **kwargs: object) -> str:
        preview_id = original(self, *args, **kwargs)  # type: ignore[arg-type]
        sketch.remove()  # the artist deletes it before the next event-loop turn ...
        (preview,) = previews(doc)
        doc.setActiveNode(preview)  # ... and Krita activates the new layer late
        return preview_id

    monkeypatch.setattr(KritaDocument, "show_preview", then_delete_the_sketch)
    assert ctl.generate()
    finish(ctl)
    pump(0.2)
    assert fake_krita.safe_asserts == []
    assert ctl.state == "preview"


def paint_layers(doc: krita.Document) -> list[str]:
    return [n.name() for n in doc.all_nodes() if not n.name().startswith("[Preview]")]


@pytest.mark.parametrize("replaced_by", ["generate again", "thumbnail"])
def test_one_undo_after_apply_takes_the_applied_layer_even_after_a_replaced_preview(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    replaced_by: str,
) -> None:
    """The preview is replaced old-out-first, so showing the new one is the last undo step:
    one Ctrl+Z after Apply removes the applied layer and no superseded preview comes back."""
    doc = new_doc(fake_krita)
    ctl.update_settings(batch=2 if replaced_by == "thumbnail" else 1)
    assert ctl.generate()
    finish(ctl)
    if replaced_by == "thumbnail":
        assert ctl.show_result(1)
    else:
        assert ctl.generate()
        finish(ctl)
    assert len(previews(doc)) == 1
    assert ctl.apply()
    assert len(paint_layers(doc)) == 2 and previews(doc) == []
    doc.undo()
    assert paint_layers(doc) == ["Background"] and previews(doc) == [], doc.all_nodes()
    assert ctl.state == "idle"


def test_a_preview_moved_to_the_bottom_is_replaced_old_out_first_too(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    root = doc.rootNode()
    ctl.update_settings(batch=2)
    assert ctl.generate()
    finish(ctl)
    (first,) = previews(doc)
    first.remove()
    root.addChildNode(first, None)
    root._children.insert(0, root._children.pop())  # the artist drags it under Background
    assert ctl.show_result(1)
    (second,) = previews(doc)
    assert first.parentNode() is None  # replaced just above what is now the lowest layer
    assert [n.name() for n in root.childNodes()] == ["Background", second.name()]
    assert ctl.apply()
    doc.undo()  # one Ctrl+Z takes the applied layer, no old preview comes back
    assert paint_layers(doc) == ["Background"] and previews(doc) == []


def test_undo_takes_the_preview_apply_says_so_redo_brings_it_back(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    assert ctl.generate()
    finish(ctl)
    doc.undo()
    assert previews(doc) == [] and ctl.state == "idle"
    assert ctl.apply() is None
    assert "preview layer is no longer in the document" in ctl.last_error
    assert [n.name() for n in doc.all_nodes()] == ["Background"]
    doc.redo()
    assert ctl.state == "preview"
    assert ctl.apply() and [n.name() for n in doc.all_nodes()] == ["Background", "a red fox #42"]


def test_discard_undone_is_the_plugins_preview_again_and_copies_are_swept(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    assert ctl.generate()
    finish(ctl)
    ctl.discard()
    assert previews(doc) == [] and ctl.results == []
    doc.undo()
    assert ctl.state == "preview" and len(ctl.results) == 1
    (preview,) = previews(doc)
    copy = doc.createNode("Copy of " + preview.name(), "paintlayer")  # as Krita names it
    doc.rootNode().addChildNode(copy, preview)
    assert ctl.apply()  # any plugin action removes copies nothing tracks
    assert previews(doc) == []


def test_a_preview_renamed_or_moved_by_the_artist_still_applies(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    group = add(doc, doc.rootNode(), "Holder", "grouplayer")
    assert ctl.generate()
    finish(ctl)
    (preview,) = previews(doc)
    preview.setName("mine now")
    preview.remove()
    group.addChildNode(preview, None)
    assert ctl.state == "preview"
    assert ctl.apply() == str(preview.uniqueId().toString())
    assert preview.name() == "a red fox #42" and preview.parentNode() is group


def test_a_preview_saved_in_a_file_is_removed_when_the_document_opens(
    ctl: Controller,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.extension import DiffusionLayersExtension, PluginApp

    app = PluginApp()
    app._controller = ctl
    DiffusionLayersExtension(None, app).setup()
    doc = fake_krita.createDocument(SIZE, SIZE, "opened", "RGBA", "U8", "", 72.0)
    stray = doc.createNode("[Preview] left in the file", "paintlayer")
    doc.rootNode()._children.append(stray)  # as loaded from a .kra
    stray._parent = doc.rootNode()
    fake_krita.notifier().imageCreated.emit(doc)
    wait_until(lambda: previews(doc) == [], 2, "the stray preview removed")


# -- kind 7: everything per document is per document ----------------------------------------


def test_controls_results_and_errors_belong_to_their_document(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc_a = new_doc(fake_krita)
    sketch_a = add(doc_a, doc_a.rootNode(), "Sketch")
    paint(sketch_a, 0, 0, 8, 8)
    doc_a.setActiveNode(sketch_a)
    assert ctl.add_active_layer_as_control()
    doc_b = new_doc(fake_krita)
    sketch_b = add(doc_b, doc_b.rootNode(), "Sketch")
    paint(sketch_b, 0, 0, 8, 8)
    assert ctl.controls.current() == []  # B has no controls: A's "Sketch" is not B's
    assert ctl.generate()
    finish(ctl)
    assert server.last_job().params["controls"] == []
    fake_krita.set_active(doc_a)
    assert ctl.state == "idle" and ctl.results == []
    assert ctl.apply() is None and previews(doc_b) != []
    assert len(ctl.controls.current()) == 1
    assert ctl.generate()
    finish(ctl)
    assert len(server.last_job().params["controls"]) == 1
    stored = json.loads(bytes(doc_a.annotation("diffusion_layers_controls")))
    assert stored[0]["layer_id"] == str(sketch_a.uniqueId().toString())
    sketch_a.remove()
    ctl.discard()
    assert not ctl.generate()
    assert "Control layer 'Sketch' is not in this document any more" in ctl.last_error
    fake_krita.set_active(doc_b)
    assert ctl.last_error == "" and ctl.state == "preview"


# -- kind 8: no document or view event crashes Krita ----------------------------------------


def test_the_mode_line_never_hides_layers_of_a_live_document(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = new_doc(fake_krita)
    live = doc.createNode("[Live] preview", "paintlayer")
    doc.rootNode().addChildNode(live, None)
    ctl.live.doc_key = KritaDocument(doc).key  # live mode runs on this document

    def hiding(*_args: object) -> bytes:
        raise AssertionError("the docker's mode line hid and re-showed the live layer")

    monkeypatch.setattr(KritaDocument, "read_pixels_without_live", hiding)
    assert "Live mode is on" in ctl.mode_preview()
    ctl.live.doc_key = None


def test_a_closed_documents_job_and_controls_are_dropped(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita)
    assert ctl.generate()
    fake_krita.close_document(doc)
    wait_until(lambda: not ctl.sessions, 5, "the closed document's session dropped")
    other = new_doc(fake_krita)
    assert ctl.generate()
    finish(ctl)
    assert previews(other) != [] and ctl.controls.current() == []
