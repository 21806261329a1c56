"""Krita starts with our plugin installed the way a user installs it; docker and actions exist.

Needs no backend: the plugin points at a port nothing listens on.
"""

from __future__ import annotations

import pytest

from .conftest import plugin_settings

ACTIONS = (
    "diffusion_layers_generate",
    "diffusion_layers_cancel",
    "diffusion_layers_apply",
    "diffusion_layers_apply_all",
    "diffusion_layers_toggle_live",
)


@pytest.fixture(scope="module")
def smoke_run(launch_krita, dead_url):
    return launch_krita("smoke", ["smoke"], plugin_settings(dead_url), timeout_s=120)


def test_krita_quits_cleanly_after_the_driver_ran(smoke_run):
    assert not smoke_run.timed_out, smoke_run.describe()
    assert smoke_run.report and smoke_run.report["finished"], smoke_run.describe()
    assert smoke_run.returncode == 0, smoke_run.describe()


def test_plugin_loads_with_its_docker_and_actions(smoke_run):
    data = smoke_run.scenario("smoke")
    assert data["plugin_modules"], "Krita did not import the diffusion_layers plugin"
    missing = [name for name in ACTIONS if not data["actions"][name]]
    assert not missing, f"actions not registered: {missing}"
    assert data["docker"] is not None, f"no Diffusion Layers docker among {data['dockers']}"


def test_driver_can_reach_the_plugin_state(smoke_run):
    data = smoke_run.scenario("smoke")
    assert data["controller_found"], "no extension/docker exposes a `controller` with `state`"
    assert data["state"] in ("idle", "error"), data["state"]


def test_window_screenshot_is_written(smoke_run):
    data = smoke_run.scenario("smoke")
    from PIL import Image

    with Image.open(data["screenshots"][0]) as image:
        assert image.width >= 800 and image.height >= 600
        assert len(set(image.convert("L").getdata())) > 16, "screenshot is blank"
