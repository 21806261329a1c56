"""``python -m backend.bench.accel_check``: what the acceleration layer alone buys on one UNet.

In-process, no HTTP: one SD1.5 txt2img pipeline (full-size random weights on CUDA, or the
tiny one with ``--tiny``), timed 1. plain, 2. after ``apply_eager_optimizations``, 3. while
``CompiledUNet`` compiles in the background (must stay eager-fast), 4. compiled. Writes JSON.
This is the evidence for backend/engine/acceleration.py independent of how the engine wires it.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _time(pipe: Any, kwargs: dict, device: str, repeats: int) -> list[float]:
    import torch

    from backend.bench.report import device_sync

    runs = []
    for _ in range(repeats):
        generator = torch.Generator("cpu").manual_seed(1)
        start = time.perf_counter()
        pipe(**kwargs, generator=generator)
        device_sync(device)
        runs.append(time.perf_counter() - start)
    return runs


def run_check(tiny: bool, size: int, steps: int, repeats: int, compile_timeout: float) -> dict:
    import torch
    from diffusers import DPMSolverMultistepScheduler

    from backend.bench.report import device_name, versions
    from backend.bench.weights import build_full_pipeline
    from backend.engine.acceleration import (
        AccelerationOptions,
        apply_eager_optimizations,
        compile_pipeline,
        prewarm,
    )

    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    # 1. The pipeline and the plain timing.
    if tiny:
        from backend.engine.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline("sd15")
    else:
        pipe = build_full_pipeline("sd15", False, device, dtype)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a fox", negative_prompt="blurry", width=size, height=size)
    kwargs.update(num_inference_steps=steps, guidance_scale=7.0, output_type="pil")
    _time(pipe, kwargs, device, 1)
    out: dict[str, Any] = {"device": device_name(device), "versions": versions()}
    out["plain_s"] = statistics.median(_time(pipe, kwargs, device, repeats))
    # 2. Eager optimisations.
    out["applied"] = apply_eager_optimizations(pipe, AccelerationOptions(), device)
    _time(pipe, kwargs, device, 1)
    out["eager_s"] = statistics.median(_time(pipe, kwargs, device, repeats))
    # 3. Background compile: requests keep the eager path meanwhile.
    options = AccelerationOptions(compile="background", buckets=((size, size),))
    if device == "cpu":
        options.compile_backend = "eager"  # inductor compiling is a CUDA path
    compiled = compile_pipeline(pipe, options, device)
    if compiled is None:
        raise RuntimeError("compile_pipeline installed nothing")
    start = time.perf_counter()
    prewarm(compiled, [(size, size)], inference_mode=False)
    out["while_compiling_s"] = _time(pipe, kwargs, device, 1)[0]
    ready = compiled.wait(compile_timeout)
    out["compile_wait_s"] = round(time.perf_counter() - start, 2)
    out["compile_states"] = compiled.states()
    # 4. Compiled (if the compile finished in time).
    if ready:
        _time(pipe, kwargs, device, 2)  # CUDA graphs record on this thread's first calls
        out["compiled_s"] = statistics.median(_time(pipe, kwargs, device, repeats))
    out["calls"] = dict(compiled.calls)
    compiled.uninstall()
    for key in ("plain_s", "eager_s", "while_compiling_s", "compiled_s"):
        if key in out:
            out[key] = round(out[key], 4)
    out["config"] = dict(tiny=tiny, size=size, steps=steps, repeats=repeats)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.bench.accel_check")
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (CI)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-timeout", type=float, default=240.0)
    parser.add_argument("--out", default="accel.json")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.size % 64 or args.size <= 0:
        parser.error(f"--size={args.size}: must be a positive multiple of 64")
    result = run_check(args.tiny, args.size, args.steps, args.repeats, args.compile_timeout)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_s")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
