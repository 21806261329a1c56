"""Scenario registry, and the smoke scenario (Krita up, our plugin loaded, docker and actions)."""

from __future__ import annotations

import sys

from .context import PLUGIN_ACTIONS, Context, gradient, sleep


def smoke(ctx: Context):
    """Works before the plugin is complete: records what of it Krita has loaded."""
    app = ctx.app
    ctx.data["plugin_modules"] = sorted(
        name for name in sys.modules if name.split(".")[0] == "diffusion_layers"
    )
    ctx.data["actions"] = {name: app.action(name) is not None for name in PLUGIN_ACTIONS}
    ctx.data["extensions"] = [type(e).__module__ + "." + type(e).__name__ for e in app.extensions()]
    ctx.data["dockers"] = [d.objectName() for d in app.dockers()]
    dock = ctx.docker()
    ctx.data["docker"] = (
        None if dock is None else {"object_name": dock.objectName(), "title": dock.windowTitle()}
    )
    ctx.new_document(256, 256, "smoke", fill=gradient)
    yield sleep(0.5)
    ctx.data["controller_found"] = ctx.controller() is not None
    ctx.data["state"] = ctx.state()
    ctx.data["docker_texts"] = ctx.docker_texts()
    ctx.screenshot("window")


def _registry() -> dict:
    from . import scenarios_colour, scenarios_generate, scenarios_live, scenarios_robust

    found = {"smoke": smoke}
    found.update(scenarios_generate.SCENARIOS)
    found.update(scenarios_robust.SCENARIOS)
    found.update(scenarios_live.SCENARIOS)
    found.update(scenarios_colour.SCENARIOS)
    from . import scenarios_layers

    found.update(scenarios_layers.SCENARIOS)
    from . import scenarios_upscale

    found.update(scenarios_upscale.SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_qa", fromlist=["SCENARIOS"]).SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_workflow", fromlist=["SCENARIOS"]).SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_qa2", fromlist=["SCENARIOS"]).SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_history", fromlist=["SCENARIOS"]).SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_edit", fromlist=["SCENARIOS"]).SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_qa3", fromlist=["SCENARIOS"]).SCENARIOS)
    found.update(__import__(f"{__package__}.scenarios_qa4", fromlist=["SCENARIOS"]).SCENARIOS)
    return found


SCENARIOS = _registry()
