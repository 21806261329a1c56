"""The reference an artist would otherwise run: a plain diffusers pipeline, default everything.

fp16 (the benchmark dtype), default attention, ``DPMSolverMultistepScheduler``, CFG, a seeded
generator, ``output_type="pil"``. ``first_s`` is load + first image; then one warm-up and
``repeats`` timed runs.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from backend.bench.report import Timing, device_sync, peak_gb, reset_peak
from backend.bench.scenarios import SEED, Scenario
from backend.bench.weights import BenchModels

log = logging.getLogger(__name__)


def load_plain(scenario: Scenario, models: BenchModels, device: str, dtype: Any) -> Any:
    import diffusers
    from diffusers import ControlNetModel, DPMSolverMultistepScheduler

    cls = getattr(diffusers, scenario.plain_class())
    extra: dict[str, Any] = {}
    if scenario.controlnet:
        extra["controlnet"] = ControlNetModel.from_pretrained(
            models.controlnet(), torch_dtype=dtype
        )
    pipe = cls.from_pretrained(models.checkpoint(scenario.model), torch_dtype=dtype, **extra)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def run_plain(
    scenario: Scenario, models: BenchModels, device: str, dtype: Any, repeats: int
) -> Timing:
    """Time the scenario in plain diffusers (load + first image, warm-up, ``repeats`` runs)."""
    import torch

    inputs = scenario.inputs()
    kwargs = scenario.plain_kwargs(inputs)

    def once(pipe: Any) -> float:
        generator = torch.Generator(device="cpu").manual_seed(SEED)
        start = time.perf_counter()
        image = pipe(**kwargs, generator=generator).images[0]
        device_sync(device)
        elapsed = time.perf_counter() - start
        if image.size != (scenario.width, scenario.height):
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
    runs = [once(pipe) for _ in range(repeats)]
    timing = Timing(runs=runs, first_s=first, peak_gb=peak_gb(device))
    # 3. Free everything before the next side runs.
    del pipe
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("plain %s: median %.3f s (first %.2f s)", scenario.name, timing.median, first)
    return timing
