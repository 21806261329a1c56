"""Live painting in real Krita (one launch): frames follow strokes in the ``[Live]`` layer
without undo steps; Apply makes one layer in one undo step; stopping removes the live layer."""

from __future__ import annotations

import pytest

from .checks import by_id
from .conftest import plugin_settings

LIVE_PREFIX = "[Live]"


@pytest.fixture(scope="module")
def run(launch_krita, e2e_backend):
    return launch_krita("live", ["live_paint"], plugin_settings(e2e_backend.url), e2e_backend)


def test_frames_follow_strokes_in_the_live_layer(run):
    data = run.scenario("live_paint")
    assert data["sha1_first"] and data["live_locked"]
    assert data["active_after_live_on"] == "Sketch", "the live layer took the artist's layer"
    assert data["read_without_live_is_canvas"], "a frame would be made from the live layer"
    assert data["projection_shows_live"] and data["live_visible_after_read"]
    first, *after = [data["sha1_first"], *data["sha1_after_strokes"]]
    assert len(set([first, *after])) == 3, "the live layer did not change with each stroke"
    assert data["frames_shown"] >= 3


def test_frames_add_no_undo_steps_and_apply_adds_exactly_one(run):
    data = run.scenario("live_paint")
    counts = [data[k] for k in ("undo_start", "undo_live_on", "undo_after_frames")]
    assert None not in counts, "Krita's History docker was not found"
    # Creating the [Live] layer is one step (libkis has no undo-free attach); frames add none.
    assert data["undo_live_on"] - data["undo_start"] <= 1
    assert data["undo_after_frames"] == data["undo_live_on"]
    assert data["undo_after_apply"] == data["undo_after_frames"] + 1


def test_apply_makes_one_real_layer_and_undo_removes_exactly_it(run):
    data = run.scenario("live_paint")
    new = [n for n in data["new_after_apply"] if not n["name"].startswith(LIVE_PREFIX)]
    assert len(new) == 1, [n["name"] for n in data["new_after_apply"]]
    applied = new[0]
    assert applied["type"] == "paintlayer" and applied["pixels"]["opaque"] > 0
    after_undo = by_id(data["after_undo"])
    assert applied["id"] not in after_undo
    assert any(n["name"].startswith(LIVE_PREFIX) for n in data["after_undo"])


def test_stopping_live_removes_the_live_layer(run):
    data = run.scenario("live_paint")
    assert not any(n["name"].startswith(LIVE_PREFIX) for n in data["after_stop"])
    assert not data["last_error"], data["last_error"]
