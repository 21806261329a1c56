"""``python -m backend.bench.accel_check``: what the acceleration layer alone buys on one UNet.

In-process, no HTTP: one SD1.5 txt2img pipeline (full-size random weights on CUDA, or the
tiny one with ``--tiny``), timed 1. plain, 2. after ``apply_eager_optimizations``, 3. while
``CompiledUNet`` compiles in the background (must stay eager-fast), 4. compiled. Writes the JSON after every stage; a stage that fails writes its error there.
This is the evidence for backend/engine/acceleration.py independent of how the engine wires it.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
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


def run_check(
    tiny: bool,
    size: int,
    steps: int,
    repeats: int,
    compile_timeout: float,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The four timings; ``on_result`` gets the result so far after every stage (the caller
    rewrites its JSON), and a stage that fails writes its error under ``errors`` (the stages
    after it that need it are skipped)."""
    import torch

    from backend.bench.report import device_name, versions

    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    out: dict[str, Any] = {"device": device_name(device), "versions": versions()}
    out["config"] = dict(tiny=tiny, size=size, steps=steps, repeats=repeats)
    out["errors"] = {}
    kwargs = dict(prompt="a fox", negative_prompt="blurry", width=size, height=size)
    kwargs.update(num_inference_steps=steps, guidance_scale=7.0, output_type="pil")
    state: dict[str, Any] = {}

    def stage(name: str, work: Callable[[], None]) -> bool:
        start = time.perf_counter()
        try:
            work()
        except Exception as exc:  # recorded in the JSON; the other stages still report
            log.exception("accel_check %s failed", name)
            out["errors"][name] = f"{type(exc).__name__}: {exc}"
        out.setdefault("stage_s", {})[name] = round(time.perf_counter() - start, 2)
        if on_result is not None:
            on_result(out)
        return name not in out["errors"]

    def build() -> None:  # the pipeline, and the plain timing
        from diffusers import DPMSolverMultistepScheduler

        if tiny:
            from backend.engine.tiny import build_tiny_pipeline

            pipe = build_tiny_pipeline("sd15")
        else:
            from backend.bench.weights import build_full_pipeline

            pipe = build_full_pipeline("sd15", False, device, dtype)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        state["pipe"] = pipe
        out["plain_first_s"] = round(_time(pipe, kwargs, device, 1)[0], 4)
        out["plain_s"] = round(statistics.median(_time(pipe, kwargs, device, repeats)), 4)

    def eager() -> None:
        from backend.engine.acceleration import AccelerationOptions, apply_eager_optimizations

        out["applied"] = apply_eager_optimizations(state["pipe"], AccelerationOptions(), device)
        _time(state["pipe"], kwargs, device, 1)
        out["eager_s"] = round(statistics.median(_time(state["pipe"], kwargs, device, repeats)), 4)

    def background_compile() -> None:  # requests keep the eager path meanwhile
        from backend.engine.acceleration import AccelerationOptions
        from backend.engine.compiled_unet import compile_pipeline, prewarm

        options = AccelerationOptions(compile="background", buckets=((size, size),))
        if device == "cpu":
            options.compile_backend = "eager"  # inductor compiling is a CUDA path
        compiled = compile_pipeline(state["pipe"], options, device)
        if compiled is None:
            raise RuntimeError("compile_pipeline installed nothing")
        state["compiled"] = compiled
        start = time.perf_counter()
        prewarm(compiled, [(size, size)], inference_mode=False)
        out["while_compiling_s"] = round(_time(state["pipe"], kwargs, device, 1)[0], 4)
        ready = compiled.wait(compile_timeout)
        out["compile_wait_s"] = round(time.perf_counter() - start, 2)
        out["compile_states"] = compiled.states()
        if not ready:
            raise TimeoutError(f"the compile did not finish within {compile_timeout:.0f} s")

    def compiled_run() -> None:
        compiled = state["compiled"]
        first = _time(state["pipe"], kwargs, device, 2)  # CUDA graphs record on first calls
        out["compiled_first_s"] = round(first[0], 4)
        out["compiled_s"] = round(
            statistics.median(_time(state["pipe"], kwargs, device, repeats)), 4
        )
        out["calls"] = dict(compiled.calls)

    if stage("plain", build) and stage("eager", eager):
        if stage("while_compiling", background_compile):
            stage("compiled", compiled_run)
    if "compiled" in state:
        state["compiled"].uninstall()
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
    from backend.bench.report import write_json

    def save(result: dict[str, Any]) -> None:  # after every stage: a killed run keeps them
        write_json(result, args.out)

    result = run_check(
        args.tiny, args.size, args.steps, args.repeats, args.compile_timeout, on_result=save
    )
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_s")}))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
