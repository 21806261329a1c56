"""Issue 17, plugin half, the two gaps: a decomposition says how well its layers recompose the
picture (``composite_error``, in the docker and in the document), and live frames with Edit on
carry the ``<layer:…>`` layers and reference rows as whole-layer PNGs, refused with the same
sentences as an Edit job (nothing is sent then).

Driven against the fake Krita and the loopback v1 server (results are solid colours)."""

from __future__ import annotations

import json

import krita
import pytest
from diffusion_layers.controller import Controller
from diffusion_layers.decompose_flow import ANNOTATION_TYPE, LARGE_COMPOSITE_ERROR
from diffusion_layers.geometry import Rect
from diffusion_layers.krita_adapter import KritaCanvas
from plugin_helpers import wait_until
from test_plugin_controller import ctl, new_doc, server  # noqa: F401
from test_plugin_edit_layers import add_layer, connected, png_pixels
from v1_server import V1Server

GREY = b"\x80\x80\x80\xff"
NOT_EXACT = "They do not add back up exactly"


def decompose(ctl: Controller) -> str:  # noqa: F811
    """Run one decomposition into 3 layers; the docker's Layers section's message."""
    from diffusion_layers.ui.edit import DecomposeBox

    box = DecomposeBox(ctl)
    assert ctl.decompose.start(), ctl.decompose.message
    wait_until(lambda: not ctl.decompose.busy, what="the decomposition to end")
    assert ctl.decompose.state == "idle", ctl.decompose.message
    box.refresh()
    text = box.message.text()
    box.hide()
    return text


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (2.125, "Decomposed into 3 layers — they recompose the picture within 2.1 levels (mean)."),
        (12.5, "Decomposed into 3 layers — they recompose the picture within 12.5 levels (mean)."),
        (None, "Decomposed into 3 layers."),
    ],
)
def test_decompose_says_how_well_the_layers_recompose_and_keeps_it_per_layer(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
    error: float | None,
    said: str,
) -> None:
    doc = new_doc(fake_krita, fill=GREY, size=(32, 32))
    connected(ctl)
    server.composite_error = error
    ctl.update_settings(model="layered", layers=3)
    text = decompose(ctl)
    assert text.startswith(said)
    large = error is not None and error > LARGE_COMPOSITE_ERROR
    assert (NOT_EXACT in text) is large
    kept = json.loads(bytes(doc.annotation(ANNOTATION_TYPE)) or b"{}")
    group = doc.nodeByName("Decomposed (3 layers)")
    assert group is not None
    ids = [child.uniqueId().toString() for child in group.childNodes()]
    assert ids == ctl.decompose.group_ids and len(ids) == 3
    for index, layer_id in enumerate(ids):  # bottom first
        assert kept[layer_id]["composite_error"] == error
        assert (kept[layer_id]["layer_index"], kept[layer_id]["layers"]) == (index, 3)
        assert kept[layer_id]["group"] == "Decomposed (3 layers)"


def test_live_edit_frames_carry_tagged_layers_and_reference_rows_whole(
    ctl: Controller,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    kdoc = new_doc(fake_krita, fill=GREY, size=(48, 40))
    add_layer(kdoc, "Cup", (30, 28, 8, 6), b"\x00\x00\xff\xff")  # red, outside the region
    add_layer(kdoc, "Style", (0, 0, 48, 40), b"\xff\x00\x00\xff")  # blue, the active layer
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt="paint <layer:Cup> in the style")
    assert ctl.controls.add_active("reference")
    ctl.controls.current()[0].strength = 0.5
    doc = KritaCanvas().active_document()
    assert doc is not None
    parts, params = ctl.live._parts(doc, Rect(0, 0, 16, 16))
    sent = json.loads(parts[0].data)
    assert sent["edit"] is True and sent["prompt"] == "paint in the style"
    assert [(c["type"], c["image"], c["model"]) for c in sent["controls"]] == [
        ("reference", "control_0", None),
        ("reference", "control_1", None),
    ]
    assert [c["strength"] for c in sent["controls"]] == [1.0, 0.5]
    by_name = {part.name: part for part in parts}
    assert by_name["image"].content_type == "image/x-raw-bgra8"
    cup, style = png_pixels(by_name["control_0"].data), png_pixels(by_name["control_1"].data)
    assert cup.size == (8, 6) and cup.getpixel((0, 0)) == (255, 0, 0, 255)  # whole, own size
    assert style.size == (48, 40) and style.getpixel((47, 39)) == (0, 0, 255, 255)
    assert [c.image for c in params.controls] == ["control_0", "control_1"]
    ctl.update_settings(edit=False, prompt="a fox")  # plain live: the row is cut to the region
    parts, _params = ctl.live._parts(doc, Rect(0, 0, 16, 16))
    assert [(p.name, p.content_type, len(p.data)) for p in parts[1:]] == [
        ("image", "image/x-raw-bgra8", 16 * 16 * 4),
        ("control_0", "image/x-raw-bgra8", 16 * 16 * 4),
    ]


@pytest.mark.parametrize(
    ("prompt", "setup", "sentence"),
    [
        ("make it <layer:Nope>", None, "There is no layer named 'Nope'"),
        ("make it <layer:Empty>", "empty", "The reference layer 'Empty' is empty"),
        ("make it <layer:Cup>", "hidden", "The reference layer 'Cup' is hidden"),
        ("<layer:Cup> <layer:Cup2> <layer:Cup3>", None, "takes at most 2 reference images"),
        ("make it <layer:>", None, "names no layer"),
    ],
)
def test_live_edit_refusals_are_the_edit_sentences_and_no_frame_is_sent(
    ctl: Controller,  # noqa: F811
    fake_krita: krita.Krita,
    prompt: str,
    setup: str | None,
    sentence: str,
) -> None:
    from diffusion_layers.ui.docker import DockerPanel

    doc = new_doc(fake_krita, fill=GREY, size=(32, 32))
    for name in ("Cup", "Cup2", "Cup3"):
        add_layer(doc, name, (1, 1, 4, 4), b"\x00\x00\xff\xff")
    if setup == "empty":
        doc.rootNode().addChildNode(doc.createNode("Empty", "paintlayer"), None)
    if setup == "hidden":
        doc.nodeByName("Cup").setVisible(False)
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt=prompt)
    panel = DockerPanel(ctl)
    assert not ctl.toggle_live()
    assert ctl.live.frames_sent == 0 and not ctl.live.running
    assert sentence in ctl.last_error
    panel.refresh()
    assert sentence in panel.error.text()
    panel.hide()


def test_live_edit_frames_encode_an_unchanged_reference_once(
    ctl: Controller,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    """The reference PNG is encoded again only when its layer's pixels change."""
    kdoc = new_doc(fake_krita, fill=GREY, size=(48, 40))
    cup = add_layer(kdoc, "Cup", (30, 28, 8, 6), b"\x00\x00\xff\xff")
    connected(ctl)
    ctl.update_settings(model="klein", edit=True, prompt="paint <layer:Cup> on the table")
    doc = KritaCanvas().active_document()
    assert doc is not None
    first, _params = ctl.live._parts(doc, Rect(0, 0, 16, 16))
    again, _params = ctl.live._parts(doc, Rect(0, 0, 16, 16))
    assert ctl.live.references.encoded == 1
    assert first[-1].data == again[-1].data and first[-1].name == "control_0"
    cup.setPixelData(b"\x00\xff\x00\xff" * 4, 30, 28, 2, 2)  # a green stroke on the cup
    changed, _params = ctl.live._parts(doc, Rect(0, 0, 16, 16))
    assert ctl.live.references.encoded == 2
    assert png_pixels(changed[-1].data).getpixel((0, 0)) == (0, 255, 0, 255)
