"""Cancel a slow job (its own launch: 150 steps); the backend going down and coming back (in
the refine launch, see conftest)."""

from __future__ import annotations

import pytest

from .checks import assert_no_previews, assert_originals_untouched, single_new_layer
from .conftest import plugin_settings

CLEAR_ERROR_WORDS = ("connect", "reach", "server", "backend", "refused", "offline", "running")


@pytest.fixture(scope="module")
def run(launch_krita, e2e_backend):
    settings = plugin_settings(e2e_backend.url, steps="150")
    return launch_krita("cancel", ["cancel_slow"], settings, e2e_backend)


def test_cancel_adds_nothing_and_returns_to_idle(run):
    data = run.scenario("cancel_slow")
    assert data["state_before_cancel"] == "generating"
    assert data["cancel_to_idle_s"] < 10, data["cancel_to_idle_s"]
    assert data["new"] == [], [n["name"] for n in data["new"]]
    assert data["previews"] == []
    assert data["state_after"] == "idle"
    assert_originals_untouched(data["before"], data["after"])


def test_backend_down_shows_a_clear_error_and_changes_nothing(refine_run):
    data = refine_run.scenario("backend_down")
    assert data["down_state"] == "error", data["down_state"]
    error = (data["down_error"] or "").lower()
    assert any(word in error for word in CLEAR_ERROR_WORDS), data["down_error"]
    shown = " ".join(data["down_docker_texts"]).lower()
    assert any(word in shown for word in CLEAR_ERROR_WORDS), data["down_docker_texts"]
    assert [n["id"] for n in data["down_after"]] == [n["id"] for n in data["down_before"]]
    assert_originals_untouched(data["down_before"], data["down_after"])
    assert_no_previews(data["down_after"])


def test_backend_back_up_generation_works_again(refine_run):
    data = refine_run.scenario("backend_down")
    assert refine_run.handled == ["backend_stop", "backend_start"], refine_run.handled
    single_new_layer(data)
    assert data["state_after"] in ("idle", "preview"), (data["state_after"], data["last_error"])
