"""Refine (strength 0.5), ControlNet from a layer, and batch + apply all: one launch each,
because each needs different plugin settings in kritarc (the refine launch is in conftest:
test_krita_robust.py shares it)."""

from __future__ import annotations

import json

import pytest

from .checks import (
    assert_above_active,
    assert_covers,
    assert_no_previews,
    assert_originals_untouched,
    launch_outputs,
    new_layers,
    single_new_layer,
)
from .conftest import plugin_settings


@pytest.fixture(scope="module")
def control_run(launch_krita, e2e_backend):
    settings = plugin_settings(e2e_backend.url)  # the scenario adds "Sketch" as its control
    return launch_krita("control", ["control_scribble"], settings, e2e_backend)


@pytest.fixture(scope="module")
def batch_run(launch_krita, e2e_backend):
    settings = plugin_settings(e2e_backend.url, batch="3")
    return launch_krita("batch", ["batch_apply_all"], settings, e2e_backend)


def _metadata(backend, run) -> list[dict]:
    """Each output's ``diffusion_layers`` PNG chunk (JSON metadata) from this launch."""
    found = []
    for entry in launch_outputs(backend, run):
        chunks = json.loads(entry["text"]) if entry["file"].endswith(".png") else {}
        raw = chunks.get("diffusion_layers")
        chunk = json.loads(raw) if raw else {}
        found.append(chunk.get("metadata", chunk) if raw else {"_text": entry["text"]})
    return found


def test_refine_whole_canvas_at_strength_half(refine_run, e2e_backend):
    data = refine_run.scenario("refine")
    assert not data["has_selection"]
    layer = single_new_layer(data)
    assert_above_active(data, layer)
    assert_covers(layer, 384, 256)
    assert_originals_untouched(data["before"], data["after"])
    assert_no_previews(data["after"])
    metadata = _metadata(e2e_backend, refine_run)
    assert metadata, "the backend wrote no output for the refine job"
    assert any(m.get("strength") == 0.5 and m.get("mode") == "img2img" for m in metadata), metadata


def test_controlnet_from_a_sketch_layer(control_run, e2e_backend):
    data = control_run.scenario("control_scribble")
    single_new_layer(data)
    metadata = _metadata(e2e_backend, control_run)
    assert metadata, "the backend wrote no output for the control job"
    controls = [c for m in metadata for c in m.get("controls", [])]
    assert any(c.get("type") == "scribble" for c in controls), metadata


def test_batch_of_three_apply_all_makes_a_group_of_three(batch_run):
    data = batch_run.scenario("batch_apply_all")
    assert data["previews_seen"], "no [Preview] layer appeared"
    assert data["results_count"] == 3, data["results_count"]
    layers = new_layers(data)
    groups = [n for n in layers if n["type"] == "grouplayer"]
    assert len(groups) == 1, [n["name"] for n in layers]
    children = [n for n in layers if n["parent_id"] == groups[0]["id"]]
    assert len(children) == 3, [n["name"] for n in children]
    seeds = {str((data["annotations"].get(c["id"]) or {}).get("seed")) for c in children}
    assert len(seeds) == 3 and "None" not in seeds, data["annotations"]
    assert len({c["pixels"]["sha1"] for c in children}) == 3, "batch results are identical"
    assert_originals_untouched(data["before"], data["after"])
    assert_no_previews(data["after"])
