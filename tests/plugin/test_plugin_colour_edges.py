"""Issue 12 kinds 1, 2, 3, 9 with the fake ``krita`` (its colour spaces: fake_krita/colour_model):
every colour model reads as 8-bit sRGB and results land in the document's own space; selections
are clipped to the canvas before anything is chosen; a soft selection is applied once; results
that do not cover the requested area are refused before anything is placed."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import krita
import pytest
from colour_model import Space, decode
from diffusion_layers.client import Client
from diffusion_layers.controller import Controller
from diffusion_layers.errors import ResultMismatch, SelectionOutsideCanvas
from diffusion_layers.geometry import Rect
from diffusion_layers.krita_adapter import KritaCanvas, KritaDocument, KritaSettingsStore
from diffusion_layers.planning import plan_job
from diffusion_layers.protocol import ResultInfo
from diffusion_layers.results import Result, new_layer, place
from diffusion_layers.settings import PluginSettings
from plugin_helpers import wait_until
from v1_server import V1Server

GROUP = "diffusion_layers"
SPACES = [
    ("RGBA", "U8"),
    ("RGBA", "U16"),
    ("RGBA", "F16"),
    ("RGBA", "F32"),
    ("GRAYA", "U8"),
    ("GRAYA", "U16"),
    ("CMYKA", "U8"),
    ("LABA", "U16"),
]
TOLERANCE = {"RGBA": 0, "GRAYA": 1, "CMYKA": 1, "LABA": 2}


def _doc(app: krita.Krita, model: str, depth: str, size: int = 32) -> krita.Document:
    return app.createDocument(size, size, "colours", model, depth, "", 72.0)


def _fill_linear_grey(doc: krita.Document, value: float) -> None:
    """50 % *linear* light in an RGBA float document (what a linear profile stores)."""
    node = doc.nodeByName("Background")
    assert node is not None
    pixel = struct.pack("<4f" if doc.colorDepth() == "F32" else "<4e", value, value, value, 1.0)
    node.setPixelData(pixel * (doc.width() * doc.height()), 0, 0, doc.width(), doc.height())


def test_new_float_documents_get_the_linear_profile(fake_krita: krita.Krita) -> None:
    assert _doc(fake_krita, "RGBA", "F32").colorProfile() == "sRGB-elle-V2-g10.icc"
    assert _doc(fake_krita, "RGBA", "U8").colorProfile() == "sRGB-elle-V2-srgbtrc.icc"


@pytest.mark.parametrize("depth", ["F32", "F16"])
def test_half_linear_grey_reaches_the_backend_as_srgb_188(
    fake_krita: krita.Krita, depth: str
) -> None:
    doc = _doc(fake_krita, "RGBA", depth)
    _fill_linear_grey(doc, 0.5)
    pixels = KritaDocument(doc).read_pixels(Rect(0, 0, 32, 32))
    assert len(pixels) == 32 * 32 * 4
    b, g, r, a = pixels[:4]
    assert abs(r - 188) <= 1 and r == g == b and a == 255, (b, g, r, a)


@pytest.mark.parametrize(("model", "depth"), SPACES)
def test_results_are_written_in_the_documents_colour_space(
    fake_krita: krita.Krita, model: str, depth: str
) -> None:
    doc = _doc(fake_krita, model, depth)
    opened = fake_krita.documents()
    adapter = KritaDocument(doc)
    colours = [bytes([30, 90, 200, 255]), bytes([250, 250, 250, 255]), bytes([0, 0, 0, 128])]
    pixels = b"".join(colours) * (16 * 12 // 3)
    undo_before = list(doc.undo_steps)
    layer_id = adapter.add_layer(new_layer_of(pixels, Rect(4, 6, 16, 12)))
    node = next(n for n in doc.all_nodes() if str(n.uniqueId().toString()) == layer_id)
    assert (node.colorModel(), node.colorDepth()) == (model, depth)
    assert node.colorProfile() == doc.colorProfile()
    # Read back through the document's own conversion: the same 8-bit sRGB colours.
    space = Space.make(model, depth, doc.colorProfile())
    stored = bytes(node.pixelData(4, 6, 16, 12))
    back = [tuple(round(c * 255) for c in px) for px in decode(space, stored)]
    for index, px in enumerate(back[:3]):
        b, g, r, a = colours[index]
        if a == 0:
            continue
        tolerance = TOLERANCE[model] if model != "GRAYA" else 255  # grey keeps luminance only
        assert abs(px[3] - a) <= 1
        assert max(abs(px[0] - r), abs(px[1] - g), abs(px[2] - b)) <= tolerance, (px, r, g, b)
    # One undo step in the artist's document; scratch documents gone, the active one kept.
    assert doc.undo_steps[len(undo_before) :] == [("add", node.name())]
    assert fake_krita.documents() == opened and fake_krita.activeDocument() is doc


@pytest.mark.parametrize(("model", "depth"), SPACES)
def test_every_colour_space_reads_as_8_bit_srgb(
    fake_krita: krita.Krita, model: str, depth: str
) -> None:
    doc = _doc(fake_krita, model, depth)
    adapter = KritaDocument(doc)
    colour = bytes([40, 160, 220, 255])
    adapter.add_layer(new_layer_of(colour * 64, Rect(0, 0, 8, 8)))
    read = adapter.read_pixels(Rect(0, 0, 8, 8))
    b, g, r, a = read[:4]
    assert a == 255
    if model != "GRAYA":
        assert max(abs(b - 40), abs(g - 160), abs(r - 220)) <= TOLERANCE[model], (b, g, r)
    # A layer (control source) in that space reads the same way.
    layer = adapter.read_layer(doc.all_nodes()[-1].name(), Rect(0, 0, 8, 8))
    assert layer is not None and layer[:4] == read[:4]


def new_layer_of(pixels: bytes, rect: Rect):
    from diffusion_layers.canvas import NewLayer

    return NewLayer("result", pixels, rect)


# -- kind 2: selections at the canvas edge ---------------------------------------------------


def _select(doc: krita.Document, mask: bytes, x: int, y: int, w: int, h: int) -> None:
    sel = krita.Selection()
    sel.setPixelData(mask, x, y, w, h)
    doc.setSelection(sel)


def _feathered_edge(width: int, height: int, feather: int) -> bytes:
    """A rectangle selection feathered ``feather`` px on every side (values ramp 0 → 255)."""
    out = bytearray(width * height)
    for y in range(height):
        for x in range(width):
            d = min(x, y, width - 1 - x, height - 1 - y)
            out[y * width + x] = min(255, int(255 * d / (2 * feather)))
    return bytes(out)


def test_feathered_selection_past_the_edge_is_clipped_and_keeps_the_strength(
    fake_krita: krita.Krita,
) -> None:
    doc = _doc(fake_krita, "RGBA", "U8", size=256)
    doc.nodeByName("Background").setPixelData(bytes([9, 9, 9, 255]) * 65536, 0, 0, 256, 256)
    # Bounds reach 16 px past the left edge, as Krita's feather makes them.
    _select(doc, _feathered_edge(112, 112, 16), -16, 80, 112, 112)
    settings = PluginSettings(strength=0.6)
    plan = plan_job(KritaDocument(doc), settings)
    assert plan.choice.mode == "inpaint" and "Refine the selection (60%)" in plan.choice.label
    assert plan.region.x >= 0 and Rect(0, 0, 256, 256).contains_rect(plan.region)


@pytest.mark.parametrize(
    ("x", "y"), [(-16, 40), (200, 40), (40, -16), (40, 200), (-16, -16), (200, 200)]
)
def test_selections_touching_each_edge_stay_on_the_canvas(
    fake_krita: krita.Krita, x: int, y: int
) -> None:
    doc = _doc(fake_krita, "RGBA", "U8", size=256)
    doc.nodeByName("Background").setPixelData(bytes([9, 9, 9, 255]) * 65536, 0, 0, 256, 256)
    _select(doc, b"\xff" * (72 * 72), x, y, 72, 72)
    plan = plan_job(KritaDocument(doc), PluginSettings(strength=1.0))
    assert plan.choice.mode == "inpaint", plan.choice
    assert Rect(0, 0, 256, 256).contains_rect(plan.region), plan.region
    assert plan.mask is not None and len(plan.mask) == plan.region.width * plan.region.height


def test_a_selection_off_the_canvas_is_refused_and_nothing_is_sent(
    fake_krita: krita.Krita,
) -> None:
    server = V1Server().start()
    try:
        fake_krita.writeSetting(GROUP, "server_url", server.url)
        ctl = Controller(KritaCanvas(), Client(server.url), KritaSettingsStore())
        doc = _doc(fake_krita, "RGBA", "U8", size=512)
        _select(doc, b"\xff" * 10000, 600, 600, 100, 100)
        assert not ctl.generate()
        assert "does not cover any part of the canvas" in ctl.last_error
        assert "Cannot generate" in ctl.mode_preview()
        # Soft selection wholly outside, its bounds across the canvas (zeros on the canvas).
        width = 612
        mask = bytearray(width * 50)
        for row in range(50):
            mask[row * width : row * width + 40] = b"\x80" * 40  # x -50..-11
            mask[row * width + 572 : (row + 1) * width] = b"\x80" * 40  # x 522..561
        _select(doc, bytes(mask), -50, 100, width, 50)
        assert KritaDocument(doc).selection_bounds() == Rect(-50, 100, width, 50)
        with pytest.raises(SelectionOutsideCanvas):
            plan_job(KritaDocument(doc), PluginSettings())
        assert not ctl.generate()
        assert [r for r in server.requests if r[0] == "POST"] == []
    finally:
        server.stop()


# -- kind 3: a soft selection is applied once --------------------------------------------------


def test_soft_selection_alpha_is_the_selection_value_once() -> None:
    region = Rect(0, 0, 4, 1)
    mask = bytes([0, 64, 129, 255])
    # The server's layer carries the selection's softness in its alpha (as the backend does).
    pixels = b"".join(bytes([10, 20, 30, v]) for v in mask)
    info = ResultInfo(index=0, seed=1, x=0, y=0, width=4, height=1, url="", raw_url="")
    item = place([Result(info, pixels)], region, mask)[0]
    layer = new_layer(item, None, region, mask)
    assert list(layer.pixels[3::4]) == [0, 64, 129, 255]
    # Opaque everywhere from a server that ignored the mask: still nothing where unselected.
    opaque = place([Result(info, bytes([10, 20, 30, 255]) * 4)], region, mask)[0]
    assert list(new_layer(opaque, None, region, mask).pixels[3::4]) == [0, 255, 255, 255]


# -- kind 9: results checked before placement --------------------------------------------------


@pytest.fixture
def server() -> Iterator[V1Server]:
    srv = V1Server().start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("box", [(0, 0, 128, 128), (0, 0, 64, 60), (0, 0, 61, 64), (3, 0, 64, 64)])
def test_a_result_of_the_wrong_size_is_refused_and_nothing_is_placed(
    fake_krita: krita.Krita, server: V1Server, box: tuple[int, int, int, int]
) -> None:
    fake_krita.writeSetting(GROUP, "server_url", server.url)
    fake_krita.writeSetting(GROUP, "steps", "2")
    ctl = Controller(KritaCanvas(), Client(server.url), KritaSettingsStore())
    doc = _doc(fake_krita, "RGBA", "U8", size=64)
    server.result_box = box
    before = [n.name() for n in doc.all_nodes()]
    assert ctl.generate()
    wait_until(lambda: ctl.state != "generating", what="the job to end")
    assert ctl.state == "error", ctl.state
    assert "nothing was placed" in ctl.last_error, ctl.last_error
    assert [n.name() for n in doc.all_nodes()] == before


def test_place_refuses_a_raw_buffer_of_the_wrong_length() -> None:
    info = ResultInfo(index=0, seed=1, x=0, y=0, width=8, height=8, url="", raw_url="")
    with pytest.raises(ResultMismatch):
        place([Result(info, bytes(8 * 7 * 4))], Rect(0, 0, 8, 8))


# -- live: stopped while a frame is read (Krita's waitForDone runs events, the toggle too) ----


class _LiveClient:
    def __init__(self) -> None:
        self.frames: list[str] = []

    def live_frame(self, session: str, parts: list, on_ok, on_error) -> None:
        self.frames.append(session)

    def close_live(self, session: str, on_ok, on_error) -> None:
        pass


def test_live_stopped_while_reading_a_frame_starts_again_cleanly(
    fake_krita: krita.Krita, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusion_layers.live import LiveLoop

    doc = _doc(fake_krita, "RGBA", "U8", size=64)
    client = _LiveClient()
    loop = LiveLoop(KritaCanvas(), client, lambda: PluginSettings(), poll_ms=60_000)  # type: ignore[arg-type]
    key = KritaDocument(doc).key
    read = KritaDocument.read_pixels_without_live

    def read_and_stop(self: KritaDocument, rect: Rect) -> bytes:
        loop.stop()  # the artist's toggle, run inside the read
        return read(self, rect)

    monkeypatch.setattr(KritaDocument, "read_pixels_without_live", read_and_stop)
    loop.start(key)
    assert client.frames == [] and not loop.running
    monkeypatch.setattr(KritaDocument, "read_pixels_without_live", read)
    loop.start(key)  # live again: the next frame goes out
    assert len(client.frames) == 1 and loop.frames_sent == 1
    loop.stop()
