"""Robustness scenarios: cancel a slow job; the backend goes down and comes back."""

from __future__ import annotations

import time

from . import probes
from .context import PREVIEW_PREFIX, Context, Wait, gradient, sleep
from .flow import GENERATE, generate_and_apply, new_nodes

CANCEL = "diffusion_layers_cancel"


def cancel_slow(ctx: Context):
    """The launch sets many steps; cancel mid-job: nothing added, the plugin back to idle."""
    doc = ctx.new_document(1024, 1024, ctx.name, fill=gradient)
    yield sleep(0.2)
    before = probes.snapshot(doc)
    ctx.trigger(GENERATE)
    yield ctx.wait_state(("generating",), 20)
    yield sleep(1.5)  # let the job reach the denoising loop
    ctx.data["state_before_cancel"] = ctx.state()
    cancelled_at = time.monotonic()
    ctx.trigger(CANCEL)
    yield ctx.wait_state(("idle",), 30)
    ctx.data["cancel_to_idle_s"] = round(time.monotonic() - cancelled_at, 2)
    yield sleep(3.0)  # a late result must not sneak in
    after = probes.snapshot(doc)
    ctx.data["before"] = before
    ctx.data["after"] = after
    ctx.data["new"] = new_nodes(before, after)
    ctx.data["previews"] = [n.name() for n in probes.find_nodes(doc, PREVIEW_PREFIX)]
    ctx.data["state_after"] = ctx.state()
    ctx.data["last_error"] = ctx.last_error()
    ctx.data["docker_texts"] = ctx.docker_texts()


def backend_down(ctx: Context):
    """Generate with the backend stopped: a clear error, the document untouched; then the
    backend comes back and the next generation works."""
    yield ctx.harness("backend_stop", 60)
    doc = ctx.new_document(128, 128, ctx.name, fill=gradient)
    yield sleep(0.2)
    before = probes.snapshot(doc)
    ctx.trigger(GENERATE)
    yield Wait("plugin reports the error", lambda: ctx.state() == "error" or ctx.last_error(), 60)
    yield sleep(0.5)
    ctx.data["down_state"] = ctx.state()
    ctx.data["down_error"] = ctx.last_error()
    ctx.data["down_docker_texts"] = ctx.docker_texts()
    ctx.screenshot("backend-down")
    down_after = probes.snapshot(doc)
    ctx.data["down_before"] = before
    ctx.data["down_after"] = down_after
    yield ctx.harness("backend_start", 240)
    yield sleep(0.5)
    yield from generate_and_apply(ctx, doc)
    ctx.data["recovered_docker_texts"] = ctx.docker_texts()


SCENARIOS = {"cancel_slow": cancel_slow, "backend_down": backend_down}
