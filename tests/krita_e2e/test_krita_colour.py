"""Pixels in and out of real Krita (issue 12, kinds 1, 2, 3, 9), one launch ``colour``.

Both colour conversions are byte-checked: what the plugin hands its HTTP client (recorded at
the client, see ``driver/.../scenarios_colour.py``) against Krita's own 8-bit sRGB conversion,
and what lands in the layer (converted back by Krita) against the backend's result.
"""

from __future__ import annotations

import pytest

from .conftest import plugin_settings

pytestmark = pytest.mark.timeout(1200)  # one launch, 7 scenarios, ~20 generations

SCENARIOS = [
    "colour_models",
    "colour_control_f32",
    "colour_txt2img",
    "edge_feather",
    "edge_members",
    "edge_outside",
    "soft_once",
    "wrong_sizes",
]
MODELS = ["RGBA/U8", "RGBA/U16", "RGBA/F16", "RGBA/F32", "GRAYA/U8", "GRAYA/U16", "CMYKA/U8",
          "LABA/U16"]  # fmt: skip
#: Largest channel difference of a result after the round trip sRGB8 -> document -> sRGB8
#: (grey: against the result's luminance; CMYK and Lab: not asserted, Krita's profiles move
#: saturated colours — the layer is checked byte for byte against Krita's own conversion).
ROUND_TRIP = {"RGBA": 1, "GRAYA": 4}


@pytest.fixture(scope="module")
def run(launch_krita, e2e_backend):
    settings = plugin_settings(e2e_backend.url, steps="2")
    return launch_krita("colour", SCENARIOS, settings, e2e_backend, timeout_s=900)


def _doc(run, key: str) -> dict:
    entry = run.scenario("colour_models")["documents"][key]
    assert "error" not in entry, entry["error"]
    return entry


# -- kind 1: every colour model, depth and profile --------------------------------------------


@pytest.mark.parametrize("key", MODELS)
def test_what_reaches_the_backend_is_kritas_srgb_view_of_the_image(run, key):
    entry = _doc(run, key)
    assert entry["params"]["mode"] == "inpaint", entry["params"]
    assert entry["sent_is_projection"], "the image sent is not Krita's 8-bit sRGB projection"
    expected = entry["expected_background"]
    if expected is not None:
        b, g, r, a = entry["sent_background_bgra"]
        assert a == 255 and max(abs(c - expected) for c in (b, g, r)) <= 1, (key, b, g, r)


def test_half_linear_grey_in_a_float_document_arrives_as_srgb_188(run):
    entry = _doc(run, "RGBA/F32")
    assert entry["space"][2] == "sRGB-elle-V2-g10.icc", entry["space"]
    b, g, r, _ = entry["sent_background_bgra"]
    assert all(abs(c - 188) <= 1 for c in (b, g, r)), (b, g, r)


@pytest.mark.parametrize("key", MODELS)
def test_results_land_in_the_documents_own_colour_space(run, key):
    entry = _doc(run, key)
    assert entry["layers"] == 1
    assert entry["layer_space"] == entry["space"], (entry["layer_space"], entry["space"])
    assert entry["layer_is_krita_conversion"], "the layer is not Krita's conversion of the result"
    model = key.split("/")[0]
    if model in ROUND_TRIP:
        assert entry["max_channel_diff"] <= ROUND_TRIP[model], entry["max_channel_diff"]
    assert entry["max_alpha_diff"] <= 1, entry["max_alpha_diff"]


@pytest.mark.parametrize("key", MODELS)
def test_applying_a_result_is_one_undo_step_in_every_colour_space(run, key):
    added = _doc(run, key)["undo_steps_added"]
    assert added in (None, 1), f"{added} undo steps (a colour conversion in the artist's history?)"


def test_live_frames_in_a_float_document_land_in_its_colour_space(run):
    data = run.scenario("colour_control_f32")
    assert data["live_layer_spaces"] == [data["doc_space"]], (data["live_error"], data)
    assert data["live_applied_spaces"] == [data["doc_space"]], data["live_applied_spaces"]


@pytest.mark.parametrize("key", MODELS)
def test_pixels_outside_the_selection_are_bit_identical(run, key):
    assert _doc(run, key)["changed_outside"] == 0


def test_a_control_layer_in_a_float_document_is_sent_as_krita_converts_it(run):
    data = run.scenario("colour_control_f32")
    assert data["control_added"]
    assert data["control_is_krita_conversion"], data["control_line_bgra"]
    assert data["mode"] == "img2img"
    assert all(abs(c - 188) <= 1 for c in data["image_grey"][:3]), data["image_grey"]
    assert data["layer_spaces"] == [data["doc_space"]]


# -- kind 2: selections at the canvas edge ----------------------------------------------------


def test_feather_past_the_edge_is_clipped_and_refines_at_the_artists_strength(run):
    data = run.scenario("edge_feather")
    assert data["krita_bounds"][0] < 0, data["krita_bounds"]  # Krita's feather leaves the canvas
    assert data["mode_label"].startswith("Refine the selection (60%)"), data["mode_label"]
    p = data["params"]
    assert p["mode"] == "inpaint" and p["strength"] == pytest.approx(0.6), p
    assert p["x"] >= 0 and p["y"] >= 0 and p["x"] + p["width"] <= 1024
    assert p["y"] + p["height"] <= 1024
    (bounds,) = data["layer_bounds"]
    assert bounds[0] >= 0 and bounds[1] >= 0 and bounds[0] + bounds[2] <= 1024, bounds
    assert bounds[1] + bounds[3] <= 1024, bounds
    assert data["changed_outside"] == 0


@pytest.mark.parametrize("name", ["right", "bottom", "top_left", "bottom_right"])
def test_selections_at_each_edge_are_not_called_outpaint(run, name):
    member = run.scenario("edge_members")["edges"][name]
    x, y, w, h = member["krita_bounds"]
    assert x < 0 or y < 0 or x + w > 512 or y + h > 512, member  # bounds do leave the canvas
    assert member["mode_label"].startswith("Refine the selection (70%)"), member["mode_label"]


def test_an_edge_selection_generates_inside_the_canvas(run):
    data = run.scenario("edge_members")
    p = data["params"]
    assert p["mode"] == "inpaint" and p["strength"] == pytest.approx(0.7)
    assert p["x"] >= 0 and p["y"] >= 0 and p["x"] + p["width"] <= 512
    assert p["y"] + p["height"] <= 512
    (bounds,) = data["layer_bounds"]
    assert bounds[0] + bounds[2] <= 512 and bounds[1] + bounds[3] <= 512, bounds


@pytest.mark.parametrize("name", ["off_canvas", "straddling"])
def test_a_selection_with_nothing_on_the_canvas_is_refused_and_nothing_is_sent(run, name):
    case = run.scenario("edge_outside")["cases"][name]
    assert case["jobs_sent"] == 0, case
    assert case["nodes_same"]
    assert "does not cover any part of the canvas" in (case["error"] or ""), case["error"]
    shown = " ".join(case["docker_texts"])
    assert "does not cover any part of the canvas" in shown, case["docker_texts"]


# -- kind 3: a soft selection is applied once -------------------------------------------------


@pytest.mark.parametrize("key", ["GRAYA/U16", "CMYKA/U8", "RGBA/F32"])
def test_txt2img_on_an_empty_canvas_in_any_colour_space(run, key):
    entry = run.scenario("colour_txt2img")["documents"][key]
    assert entry["mode"] == "txt2img"
    assert entry["layer_spaces"] == [entry["doc_space"]], entry
    assert entry["layer_bounds"] == [[0, 0, 64, 64]], entry["layer_bounds"]


@pytest.mark.parametrize("mode", ["inpaint", "refine", "apply_all", "live", "outpaint"])
def test_a_soft_selections_value_is_the_layers_alpha_once(run, mode):
    data = run.scenario("soft_once")
    assert mode in data["modes"], (mode, data.get("live_error"), data.get("live_stuck"))
    if mode == "outpaint":
        assert data["modes"][mode]["sent_mode"] == "outpaint"
    edges = data["modes"][mode]["edge"]
    assert edges and all(edges), f"no soft edge pixels recorded for {mode}"
    for edge in edges:
        worst = max(edge, key=lambda e: abs(e[2] - e[1]))
        assert abs(worst[2] - worst[1]) <= 2, f"{mode}: x={worst[0]} v={worst[1]} alpha={worst[2]}"
        at_129 = [e for e in edge if 126 <= e[1] <= 132]
        assert at_129 and all(abs(a - v) <= 2 for _, v, a in at_129), at_129


# -- kind 9: results are checked before they are placed ---------------------------------------


@pytest.mark.parametrize(
    "name", ["double_whole", "short_whole", "double_selection", "short_selection"]
)
def test_a_result_of_the_wrong_size_is_refused_and_nothing_placed(run, name):
    case = run.scenario("wrong_sizes")["cases"][name]
    assert case["state"] == "error", case
    assert "nothing was placed" in (case["error"] or ""), case["error"]
    assert any("nothing was placed" in t for t in case["docker_texts"]), case["docker_texts"]
    assert case["nodes_same"] and case["pixels_same"]


def test_a_live_frame_of_the_wrong_size_stops_live_with_a_sentence(run):
    case = run.scenario("wrong_sizes")["cases"]["live_short"]
    assert not case["running"], case
    assert "nothing was placed" in (case["error"] or ""), case["error"]
    assert case["frames_shown"] == 0 and case["live_layers"] == []
