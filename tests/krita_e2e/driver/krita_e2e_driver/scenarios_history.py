"""Recording results into the document's history keeps Krita responsive (issue 18 follow-up).

A 1024 x 1024 result (incompressible noise: the worst case for its PNG, clipped to a soft
selection) goes through the plugin's Workflow and its HistoryRecorder while the upscale
scenarios' 10 ms heartbeat measures the UI thread's longest stall; the same result recorded
synchronously (the old way) is timed for comparison. A second document is closed while its
result is being encoded: nothing is written into it and Krita carries on.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from .context import Context, ScenarioFailed, Wait, gradient, sleep
from .scenarios_upscale import Heartbeat, Timings

SIDE = 1024
RESULTS = 3  # a batch of three 1024 x 1024 results


def history_record_heartbeat(ctx: Context):
    from diffusion_layers import history
    from diffusion_layers import results as results_mod
    from diffusion_layers.geometry import Rect
    from diffusion_layers.protocol import JobParams
    from diffusion_layers.workflow import Workflow

    ctx.new_document(SIDE, SIDE, ctx.name, fill=gradient)
    yield sleep(0.5)
    c = ctx.controller()
    workflow = Workflow.of(c)
    adapter = c.canvas.active_document()
    if adapter is None:
        raise ScenarioFailed("no active document for the plugin")
    params = JobParams(mode="txt2img", width=SIDE, height=SIDE, prompt="heartbeat", seed=5)
    region = Rect(0, 0, SIDE, SIDE)
    mask = bytes(range(256)) * (SIDE * SIDE // 256)  # soft, with empty columns: clipping work
    results = [
        SimpleNamespace(pixels=os.urandom(SIDE * SIDE * 4), rect=region, seed=n)
        for n in range(RESULTS)
    ]
    # The old way, for comparison: one result recorded on the UI thread.
    start = time.monotonic()
    history.record(adapter, [history.NewEntry(results[0].pixels, region, 99, params)], 256)
    ctx.data["sync_record_ms"] = round((time.monotonic() - start) * 1000, 1)
    recorder = workflow.recorder
    phase = {"now": "baseline"}  # baseline: Krita (and the machine) alone, for comparison
    heart = Heartbeat(lambda: "recording" if recorder.pending else phase["now"])
    timings = Timings()
    timings.wrap(history, "commit")
    heart.start()
    yield sleep(1.5)
    phase["now"] = "after"
    start = time.monotonic()
    workflow._record(
        adapter.key, SimpleNamespace(params=params, region=region, mask=mask, results=results)
    )
    ctx.data["submit_ms"] = round((time.monotonic() - start) * 1000, 1)
    yield Wait("the history written", lambda: recorder.pending == 0, 120)
    ctx.data["recorded_s"] = round(time.monotonic() - start, 2)
    yield sleep(0.3)
    ctx.data["heartbeat"] = heart.stop()
    ctx.data["timings"] = timings.restore()
    kept = history.load(adapter).entries
    ctx.data["seeds"] = [e.seed for e in kept]
    expected = [results_mod.new_layer(r, params, region, mask).pixels for r in results]
    ctx.data["exact"] = [history.pixels_of(adapter, e) for e in kept[1:]] == expected
    ctx.data["message"] = workflow.message
    # A document closed while its result is encoded: no write into it, no crash.
    other = ctx.new_document(256, 256, ctx.name + "-closed", fill=gradient)
    yield sleep(0.5)
    closing = c.canvas.active_document()
    if closing is None:
        raise ScenarioFailed("no active document for the plugin")
    small = [SimpleNamespace(pixels=os.urandom(SIDE * SIDE * 4), rect=region, seed=7)]
    workflow._record(
        closing.key, SimpleNamespace(params=params, region=region, mask=None, results=small)
    )
    other.setModified(False)
    other.close()
    yield Wait("the closed document's work done", lambda: recorder.pending == 0, 60)
    yield sleep(0.3)
    ctx.data["closed_is_open"] = closing.is_open()
    ctx.data["after_close_message"] = workflow.message
    ctx.data["first_still_open"] = adapter.is_open() and len(history.load(adapter).entries)


SCENARIOS = {"history_record_heartbeat": history_record_heartbeat}
