"""``transfer_2048``: what moving a large region between plugin and backend costs.

One img2img job on a ``size`` x ``size`` region through the real server on loopback, timed end
to end by the client (encode the image part, POST, SSE until done, GET the layer, decode it),
minus the seconds the engine itself spent in ``generate`` (measured inside the server by
``TimedEngine``). What is left is the transfer overhead: codecs on both sides, HTTP, the queue,
the result conversion and the result file written to the output folder.

"plain" is the PNG codec both ways (what most plugins send); "ours" the raw BGRA fast path.
"""

from __future__ import annotations

import logging
import statistics

import numpy as np

from backend.bench.report import Timing
from backend.bench.scenarios import NEGATIVE, PROMPT, SEED
from backend.bench.server import BenchClient, TimedEngine

log = logging.getLogger(__name__)


def transfer_params(model: str, size: int) -> dict:
    return {
        "mode": "img2img",
        "model": model,
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "width": size,
        "height": size,
        "steps": 2,
        "strength": 0.5,
        "cfg_scale": 1.0,
        "sampler": "dpmpp_2m",
        "seed": SEED,
    }


def transfer_image(size: int) -> np.ndarray:
    """A painting-like RGBA region: smooth gradients plus texture (PNG cannot cheat on it)."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 255 // size, yy * 255 // size, (xx ^ yy) & 255], -1)
    rgb = rgb + rng.integers(0, 16, (size, size, 3))
    alpha = np.full((size, size, 1), 255)
    return np.concatenate([rgb, alpha], -1).clip(0, 255).astype(np.uint8)


def measure_codec(
    client: BenchClient, engine: TimedEngine, model: str, size: int, codec: str, repeats: int
) -> Timing:
    """Overheads (end to end minus engine time) of ``repeats`` jobs after one warm-up."""
    params = transfer_params(model, size)
    inputs = {"image": transfer_image(size)}
    overheads, totals, moved = [], [], 0
    for i in range(repeats + 1):
        total, pixels, moved = client.run_job(params, inputs, codec)
        if pixels.shape[:2] != (size, size):
            raise RuntimeError(f"transfer: got a {pixels.shape[:2]} layer for {size}x{size}")
        if i == 0:
            continue  # warm-up
        overheads.append(max(total - engine.generate_s[-1], 0.0))
        totals.append(total)
    extra = {"total_s": round(statistics.median(totals), 4), "bytes": moved, "codec": codec}
    log.info("transfer %s %d^2: overhead %.3f s", codec, size, statistics.median(overheads))
    return Timing(runs=overheads, extra=extra)


def run_transfer(
    client: BenchClient, engine: TimedEngine, model: str, size: int, repeats: int
) -> tuple[Timing, Timing]:
    """(PNG overhead, raw BGRA overhead)."""
    png = measure_codec(client, engine, model, size, "png", repeats)
    raw = measure_codec(client, engine, model, size, "raw", repeats)
    return png, raw
