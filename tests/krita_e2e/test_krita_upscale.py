"""Upscale / Refine detail in real Krita (#15): exact sizes and places, Krita responsive.

One launch against the real backend (tiny model, CPU): a 3000x2000 canvas upscaled x1.5 into
a new document, and a 2500x1500 selection refined in place. A 10 ms QTimer heartbeat measures
the longest stall of Krita's UI thread while the plugin reads, waits and writes.
"""

from __future__ import annotations

import pytest

from .conftest import plugin_settings

SCENARIOS = ["upscale_new_document", "upscale_refine_in_place"]
#: The longest the UI thread may stall while the plugin works (issue #15: 100 ms at a time).
MAX_STALL_MS = 100.0
#: Phases where the plugin's own work runs in strips (reading the canvas, writing the new
#: document). A gap is labelled with the phase at both its ends; transitions ("running>
#: writing") hold Krita's own single calls on the whole picture (createDocument, adding a
#: 4500x3000 layer, addView), which no plugin can cut up: they are recorded, not bounded.
PLUGIN_PHASES = ("reading", "writing")


@pytest.fixture(scope="module")
def run(launch_krita, e2e_backend):
    settings = plugin_settings(e2e_backend.url, steps="2")
    return launch_krita("upscale", SCENARIOS, settings, e2e_backend, timeout_s=900)


def _stalls(data: dict) -> dict:
    """Worst gaps that hold the plugin's strip work: a gap labelled "reading" at either end
    (a fast read can fit between two ticks, leaving only "idle>reading" / "reading>generating"
    labels, as on the CI machine), or "writing" at both ends."""
    return {
        label: ms
        for label, ms in data["heartbeat"]["worst_by_phase"].items()
        if "reading" in label.split(">") or label == "writing"
    }


def test_upscale_into_a_new_document_of_exactly_the_scaled_size(run):
    data = run.scenario("upscale_new_document")
    assert data["new_documents"] == 1, data
    new = data["new"]
    assert new["size"] == [4500, 3000], new
    assert new["name"] == "upscale_new_document x1.5", new
    assert new["colour"] == ["RGBA", "U8"] and new["layers"] == 1, new
    assert new["resolution"] == 450, new  # 300 ppi x 1.5: the same print size
    assert new["opaque_corner"] == 255 and new["active"], new


def test_refine_in_place_adds_one_layer_exactly_over_the_selection(run):
    data = run.scenario("upscale_refine_in_place")
    assert data["state_after"] == "idle" and not data["error"], data
    layers = data["new_layers"]
    assert len(layers) == 1, layers
    assert layers[0]["bounds"] == data["selection"], layers
    assert not set(data["new_ids"]) & set(data["after_undo"]), "one undo keeps the layer"


@pytest.mark.parametrize("name", SCENARIOS)
def test_krita_stays_responsive_while_the_plugin_works(run, name):
    data = run.scenario(name)
    beat = data["heartbeat"]
    assert beat["ticks"] > 20, beat
    stalls = _stalls(data)
    print(f"{name}: worst UI stalls by phase (ms): {beat['worst_by_phase']}")
    print(f"{name}: longest calls (ms): {data['timings']}")
    assert stalls and max(stalls.values()) <= MAX_STALL_MS, beat
    if name == "upscale_refine_in_place":  # no new document: every gap is the plugin's flow,
        # the 2500x1500 result landing in strips and joining the tree included (was 115 ms)
        assert max(beat["worst_by_phase"].values()) <= MAX_STALL_MS, (beat, data["timings"])


@pytest.fixture(scope="module")
def large_run(launch_krita, dead_url):
    return launch_krita("upscale-large", ["large_read_write"], plugin_settings(dead_url), None, 300)


def test_a_6000x4000_canvas_is_read_and_written_in_strips_without_stalling_krita(large_run):
    """Issue #15: reading a 6000x4000 region and applying the result never stalls the UI
    thread for more than 100 ms at a time (the plugin's strips; Krita's own document
    creation and view are recorded under 'creating'/'showing', not bounded)."""
    data = large_run.scenario("large_read_write")
    assert data["bytes"] == 6000 * 4000 * 4 and data["same_corner"], data
    beat = data["heartbeat"]
    print(f"6000x4000: worst UI stalls by phase (ms): {beat['worst_by_phase']}")
    stalls = {p: ms for p, ms in beat["worst_by_phase"].items() if p in PLUGIN_PHASES}
    assert set(stalls) == {"reading", "writing"}, beat
    assert max(stalls.values()) <= MAX_STALL_MS, beat
