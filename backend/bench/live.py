"""Our side of the live scenario: sequential frames through ``POST /v1/live/{session}/frames``.

Each frame is the next canvas of one brush stroke (``Scenario.inputs(frame)``: the same frames
in the same order as the plain side), sent only when the previous answer arrived, as the
plugin does (at most one frame in flight). The prompt stays the same, so the engine's prompt
embedding cache is used as it is for a painting artist; nothing else repeats. ``fps`` is
``1 / median round trip`` (params + raw BGRA canvas up, raw BGRA frame back).
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

from backend.bench.report import Timing, peak_gb, reset_peak
from backend.bench.scenarios import Scenario
from backend.bench.server import BenchClient, BenchError

log = logging.getLogger(__name__)

SESSION = "bench-live"


def check_frame(scenario: Scenario, pixels: Any, headers: Any) -> None:
    """A frame must cover the region, not be empty, and have run the requested sampling."""
    if pixels.shape[:2] != (scenario.height, scenario.width) or pixels[..., 3].max() == 0:
        raise BenchError(f"ours {scenario.name}: a {pixels.shape} frame, or an empty one")
    sampling = (headers.get("X-Sampler"), headers.get("X-Steps"))
    if sampling != (scenario.sampler, str(scenario.steps)):
        raise BenchError(f"ours {scenario.name}: the server ran {sampling}, not the scenario's")


def run_live_ours(
    scenario: Scenario,
    client: BenchClient,
    device: str,
    frames: int,
    warmup_s: float = 0.0,
    first_from: float | None = None,
    budget_deadline: float | None = None,
) -> Timing:
    """Time ``frames`` live frames after the first one and the warm-up; ``fps`` in extra."""
    params = scenario.live_params()
    frame = 0
    render_ms: list[float] = []

    def send() -> float:
        nonlocal frame
        image = scenario.inputs(frame)["image"]  # the next canvas, before the clock starts
        frame += 1
        seconds, pixels, headers = client.live_frame(SESSION, params, image)
        check_frame(scenario, pixels, headers)
        render_ms.append(float(headers.get("X-Render-Ms", "nan")))
        return seconds

    reset_peak(device)
    # 1. First frame (from server start when this is the first scenario).
    start = time.perf_counter() if first_from is None else first_from
    send()
    first = time.perf_counter() - start
    # 2. Warm-up: at least one frame; longer while a background compile may still improve it.
    deadline = time.perf_counter() + warmup_s
    if budget_deadline is not None:
        deadline = min(deadline, budget_deadline)
    send()
    while time.perf_counter() < deadline:
        send()
    # 3. Timed frames, then the session's own count (proof they ran on the live route).
    timed_from = len(render_ms)
    runs = [send() for _ in range(frames)]
    info = client.close_live(SESSION)
    if info.get("frames") != frame:
        raise BenchError(f"ours {scenario.name}: sent {frame} frames, session rendered {info}")
    timing = Timing(runs=runs, first_s=first, peak_gb=peak_gb(device))
    timing.extra.update(
        fps=round(1.0 / timing.median, 2),
        frames=len(runs),
        session_frames=info["frames"],
        render_s=round(statistics.median(render_ms[timed_from:]) / 1000.0, 4),
        sampler=scenario.sampler,
        steps=scenario.steps,
    )
    log.info(
        "ours %s: %.2f fps (median %.3f s, render %.3f s, first %.2f s)",
        scenario.name,
        timing.extra["fps"],
        timing.median,
        timing.extra["render_s"],
        first,
    )
    return timing
