"""The reference an artist would otherwise run: a plain diffusers pipeline, default everything.

fp16 (the benchmark dtype), default attention, the scenario's scheduler
(``DPMSolverMultistepScheduler``; ``LCMScheduler`` for the live scenario), its CFG, a seeded
generator, ``output_type="pil"``. ``first_s`` is load + first image; then one warm-up and
``repeats`` timed runs. A live scenario sends a fresh canvas every call (``inputs(frame)``, the
same frames in the same order as our side) and times ``frames`` calls; it reports ``fps``.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from backend.bench.plain_upscale import peak_rss_gb, plain_tiled_upscale
from backend.bench.report import Timing, device_sync, peak_gb, reset_peak
from backend.bench.scenarios import SEED, Scenario
from backend.bench.weights import BenchModels

log = logging.getLogger(__name__)

#: Our sampler name -> the diffusers scheduler an artist would set on a plain pipeline.
PLAIN_SCHEDULERS = {
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "lcm": "LCMScheduler",
    "euler": "FlowMatchEulerDiscreteScheduler",  # the transformer families' own sampler
}


def load_plain(scenario: Scenario, models: BenchModels, device: str, dtype: Any) -> Any:
    import diffusers
    from diffusers import ControlNetModel

    if scenario.sampler not in PLAIN_SCHEDULERS:
        raise ValueError(f"sampler={scenario.sampler!r}: expected one of {list(PLAIN_SCHEDULERS)}")
    scheduler = getattr(diffusers, PLAIN_SCHEDULERS[scenario.sampler])
    cls = getattr(diffusers, scenario.plain_class())
    extra: dict[str, Any] = {}
    if scenario.controlnet:
        extra["controlnet"] = ControlNetModel.from_pretrained(
            models.controlnet(), torch_dtype=dtype
        )
    pipe = cls.from_pretrained(models.checkpoint(scenario.model), torch_dtype=dtype, **extra)
    pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def run_plain(
    scenario: Scenario,
    models: BenchModels,
    device: str,
    dtype: Any,
    repeats: int,
    frames: int | None = None,
) -> Timing:
    """Time the scenario in plain diffusers (load + first image, warm-up, ``repeats`` runs;
    ``frames`` runs for a live scenario, each on the next frame's canvas)."""
    import torch

    fixed = scenario.plain_kwargs(scenario.inputs())
    source = scenario.inputs().get("image")
    frame = 0

    def once(pipe: Any) -> float:
        nonlocal frame
        kwargs = fixed
        if scenario.live:  # a fresh canvas per call, built before the clock starts
            kwargs = scenario.plain_kwargs(scenario.inputs(frame))
            frame += 1
        generator = torch.Generator(device="cpu").manual_seed(SEED)
        start = time.perf_counter()
        if scenario.mode == "upscale":
            image = plain_tiled_upscale(pipe, source, scenario.factor, kwargs, SEED)
        else:
            image = pipe(**kwargs, generator=generator).images[0]
        device_sync(device)
        elapsed = time.perf_counter() - start
        if image.size != scenario.result_size():
            raise RuntimeError(f"plain {scenario.name}: got a {image.size} image")
        return elapsed

    # 1. Load + first image.
    reset_peak(device)
    start = time.perf_counter()
    pipe = load_plain(scenario, models, device, dtype)
    once(pipe)
    first = time.perf_counter() - start
    # 2. One warm-up, then the timed runs.
    once(pipe)
    count = frames if scenario.live and frames is not None else repeats
    runs = [once(pipe) for _ in range(count)]
    timing = Timing(runs=runs, first_s=first, peak_gb=peak_gb(device))
    if scenario.mode == "upscale":
        timing.extra.update(peak_rss_gb=peak_rss_gb(), factor=scenario.factor)
    if scenario.live:
        timing.extra.update(
            fps=round(1.0 / timing.median, 2),
            frames=len(runs),
            sampler=PLAIN_SCHEDULERS[scenario.sampler],
            steps=scenario.steps,  # denoising steps run: int(num_inference_steps * strength)
            num_inference_steps=fixed["num_inference_steps"],
        )
    # 3. Free everything before the next side runs.
    del pipe
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("plain %s: median %.3f s (first %.2f s)", scenario.name, timing.median, first)
    return timing
