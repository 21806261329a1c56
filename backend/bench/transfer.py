"""``transfer_2048``: what moving a large region between plugin and backend costs.

One img2img job on a ``size`` x ``size`` region through the real server on loopback, timed end
to end by the client (encode the image part, POST, SSE until done, GET the layer, decode it),
minus the seconds the engine itself spent in ``generate`` (measured inside the server by
``TimedEngine``). What is left is the transfer overhead: codecs on both sides, HTTP, the queue,
the result conversion and the result file written to the output folder.

"plain" is the PNG codec both ways (what most plugins send); "ours" the raw BGRA fast path,
sent as the plugin sends it: Krita's BGRA bytes in one multipart body (built once per job, one
copy), the layer fetched as BGRA bytes that become a Krita layer as they are. "ours" also
reports where its time went (``stages_ms``: medians of build / POST-to-202 / 202-to-done /
GET .raw). Between runs an untimed GET of the ``.png`` result waits for the server's
background compaction of the result file (see backend/outputs.py): real jobs are seconds apart.
"""

from __future__ import annotations

import json
import logging
import statistics
import time

import cv2
import numpy as np

from backend.bench.report import Timing
from backend.bench.scenarios import NEGATIVE, PROMPT, SEED
from backend.bench.server import FINAL_EVENTS, BenchClient, BenchError, TimedEngine
from backend.protocol import RAW_BGRA

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
    if codec == "raw":
        return measure_raw(client, engine, model, size, repeats)
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


BOUNDARY = "dl-bench-transfer-7f3a9c"


def raw_body(params: dict, bgra: bytes) -> bytes:
    """The plugin's multipart body: params JSON + Krita's BGRA bytes, one copy."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="params"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps(params)}\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="image"\r\n'
        f"Content-Type: {RAW_BGRA}\r\n\r\n"
    ).encode()
    return b"".join((head, bgra, f"\r\n--{BOUNDARY}--\r\n".encode()))


def raw_job(client: BenchClient, params: dict, bgra: bytes) -> tuple[dict[str, float], bytes, int]:
    """One raw job timed by stage (seconds), its layer's BGRA bytes, the bytes sent."""
    http = client.http
    t0 = time.perf_counter()
    # 1. Build the body and POST it.
    body = raw_body(params, bgra)
    t1 = time.perf_counter()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    created = http.post("/v1/jobs", content=body, headers=headers)
    if created.status_code != 202:
        raise BenchError(f"POST /v1/jobs answered {created.status_code}: {created.text}")
    t2 = time.perf_counter()
    # 2. Follow the events until done.
    job_id, info, event = created.json()["id"], None, ""
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in FINAL_EVENTS:
                info = json.loads(line[5:])
                break
    if not info or info.get("state") != "done" or not info.get("results"):
        raise BenchError(f"job {job_id} ended {info and info.get('state')}")
    t3 = time.perf_counter()
    # 3. Fetch the layer as BGRA (a Krita layer takes these bytes as they are).
    answer = http.get(info["results"][0]["raw_url"])
    if answer.status_code != 200 or len(answer.content) != len(bgra):
        raise BenchError(f"GET raw answered {answer.status_code}, {len(answer.content)} bytes")
    t4 = time.perf_counter()
    # 4. Untimed: wait for the result file's compaction (jobs are seconds apart in real use).
    http.get(info["results"][0]["url"])
    stages = {"build": t1 - t0, "post": t2 - t1, "to_done": t3 - t2, "get_raw": t4 - t3}
    return {**stages, "total": t4 - t0}, answer.content, len(body)


def measure_raw(
    client: BenchClient, engine: TimedEngine, model: str, size: int, repeats: int
) -> Timing:
    """The raw BGRA path as the plugin drives it, with the stage split in ``stages_ms``."""
    params = transfer_params(model, size)
    bgra = cv2.cvtColor(transfer_image(size), cv2.COLOR_RGBA2BGRA).tobytes()  # Krita's bytes
    overheads, rows, moved = [], [], 0
    for i in range(repeats + 1):
        stages, layer, sent = raw_job(client, params, bgra)
        moved = sent + len(layer)
        if i == 0:
            continue  # warm-up
        generate_s = engine.generate_s[-1]
        overheads.append(max(stages["total"] - generate_s, 0.0))
        rows.append({**stages, "to_done_minus_engine": max(stages["to_done"] - generate_s, 0.0)})
    stages_ms = {
        key: round(statistics.median(row[key] for row in rows) * 1000, 1) for key in rows[0]
    }
    total = statistics.median(row["total"] for row in rows)
    extra = {"total_s": round(total, 4), "bytes": moved, "codec": "raw", "stages_ms": stages_ms}
    log.info(
        "transfer raw %d^2: overhead %.3f s, %s", size, statistics.median(overheads), stages_ms
    )
    return Timing(runs=overheads, extra=extra)


def run_transfer(
    client: BenchClient, engine: TimedEngine, model: str, size: int, repeats: int
) -> tuple[Timing, Timing]:
    """(PNG overhead, raw BGRA overhead)."""
    png = measure_codec(client, engine, model, size, "png", repeats)
    raw = measure_codec(client, engine, model, size, "raw", repeats)
    return png, raw
