"""Inpaint a selection, undo, save/reopen and txt2img in one Krita launch (default settings)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .checks import (
    assert_above_active,
    assert_no_previews,
    assert_originals_untouched,
    by_id,
    inside,
    single_new_layer,
)
from .conftest import plugin_settings

SCENARIOS = ["inpaint_rect", "inpaint_ellipse_undo", "save_reopen", "txt2img"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "krita-docker.png"


@pytest.fixture(scope="module")
def run(launch_krita, e2e_backend):
    return launch_krita("inpaint", SCENARIOS, plugin_settings(e2e_backend.url), e2e_backend)


@pytest.mark.parametrize("name", ["inpaint_rect", "inpaint_ellipse_undo"])
def test_inpaint_adds_one_layer_above_the_active_one_inside_the_selection(run, name):
    data = run.scenario(name)
    assert data["previews_seen"], "no [Preview] layer appeared"
    layer = single_new_layer(data)
    assert_above_active(data, layer)
    assert_no_previews(data["after"])
    outside = data["outside"][layer["id"]]
    assert outside["visible_inside"] > 0, "the new layer is empty inside the selection"
    assert outside["visible_outside"] == 0, f"{outside['visible_outside']} px outside selection"
    bbox = layer["pixels"]["alpha_bbox"]
    assert bbox and inside(bbox, data["selection"]), (bbox, data["selection"])


@pytest.mark.parametrize("name", ["inpaint_rect", "inpaint_ellipse_undo"])
def test_inpaint_leaves_the_original_layers_bit_identical(run, name):
    data = run.scenario(name)
    assert_originals_untouched(data["before"], data["after"])


def test_applied_layer_parameters_go_into_the_document(run):
    data = run.scenario("inpaint_rect")
    layer = single_new_layer(data)
    entry = data["annotations"][layer["id"]]
    assert isinstance(entry, dict) and "seed" in entry, entry
    assert entry["params"]["mode"] == "inpaint", entry["params"]


def test_undo_after_apply_removes_exactly_the_new_layer(run):
    data = run.scenario("inpaint_ellipse_undo")
    layer = single_new_layer(data)
    after_undo = by_id(data["after_undo"])
    assert layer["id"] not in after_undo, "undo left the applied layer"
    expected = {n["id"] for n in data["after"] if n["type"] in ("paintlayer", "grouplayer")}
    remaining = {i for i, n in after_undo.items() if n["type"] in ("paintlayer", "grouplayer")}
    assert remaining == expected - {layer["id"]}
    assert_originals_untouched(data["before"], data["after_undo"])


def test_save_and_reopen_keeps_the_layer_and_its_parameters(run):
    data = run.scenario("save_reopen")
    assert data["saved"], "saveAs returned False"
    layer = single_new_layer(data)
    reopened = {n["name"]: n for n in data["reopened"]}
    assert layer["name"] in reopened, f"{layer['name']!r} missing after reopen"
    same = reopened[layer["name"]]
    assert same["pixels"]["sha1"] == layer["pixels"]["sha1"], "pixels changed by save/reopen"
    before = data["annotations"][layer["id"]]
    after = data["reopened_annotations"].get(same["id"]) or data["reopened_annotations"].get(
        layer["id"]
    )
    assert before and after == before, (before, data["reopened_raw_annotations"])


def test_txt2img_fills_an_empty_768x512_canvas(run):
    data = run.scenario("txt2img")
    layer = single_new_layer(data)
    assert layer["bounds"] == [0, 0, 768, 512], layer["bounds"]
    pixels = layer["pixels"]
    assert pixels["opaque"] == 768 * 512, pixels
    assert pixels["distinct_red"] > 8 or pixels["distinct_green"] > 8, "flat result"
    assert_no_previews(data["after"])
    assert data["annotations"][layer["id"]]["params"]["mode"] == "txt2img"


def test_screenshot_of_the_window_with_the_docker(run):
    data = run.scenario("inpaint_rect")
    shot = Path(data["screenshots"][0])
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("DL_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, DOCS_SCREENSHOT)
