"""The reference an artist would otherwise run: a plain diffusers pipeline, default everything.

fp16 (the benchmark dtype), default attention, the scenario's scheduler
(``DPMSolverMultistepScheduler``; ``LCMScheduler`` for the live scenario), its CFG, a seeded
generator, ``output_type="pil"``. ``first_s`` is load + first image; then one warm-up and
``repeats`` timed runs. A live scenario sends a fresh canvas every call (``inputs(frame)``, the
same frames in the same order as our side) and times ``frames`` calls; it reports ``fps``.
"""

from __future__ import annotations

import gc
import inspect
import json
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
    folder = models.checkpoint(scenario.model)
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    if index.get("processor") == ["transformers", "Qwen2VLProcessor"]:
        # Qwen-Image's captioning processor: transformers 5 loads a Qwen2VLProcessor only with
        # torchvision (for its video part); a pipeline given a prompt never captions.
        extra["processor"] = None
    pipe = cls.from_pretrained(folder, torch_dtype=dtype, **extra)
    pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    # The tiny models' working size (64 px), which sized() below applies as our engine does.
    transformer = getattr(pipe, "transformer", None)
    pipe._dl_native_size = transformer.config.get("dl_native_size") if transformer else None
    return pipe.to(device)


def generate(scenario: Scenario, pipe: Any, kwargs: dict[str, Any], generator: Any) -> Any:
    """One plain picture (PIL): for mode layers the bottom one of its ``layers`` RGBA layers
    (at the pipeline's resolution bucket: our engine resizes its layers back to the region)."""
    from backend.engine.families.flux2_klein import out_layers
    from backend.engine.families.qwen_run import sized

    if "text_encoder_out_layers" in inspect.signature(pipe.__call__).parameters:
        # FLUX.2 klein stacks hidden states 9, 18, 27 of Qwen3-4B's 36 layers: the same
        # quarters of the tiny encoder's (as our engine does).
        kwargs = {**kwargs, "text_encoder_out_layers": out_layers(pipe.text_encoder)}
    with sized(pipe):  # a no-op but for the tiny Qwen-Image models (64 px native)
        image = pipe(**kwargs, generator=generator).images[0]
    if scenario.mode == "layers":
        if len(image) != scenario.layers:
            raise RuntimeError(f"plain {scenario.name}: got {len(image)} layers")
        return image[0]
    if image.size != scenario.result_size():
        raise RuntimeError(f"plain {scenario.name}: got a {image.size} image")
    return image


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
            if image.size != scenario.result_size():
                raise RuntimeError(f"plain {scenario.name}: got a {image.size} image")
        else:
            generate(scenario, pipe, kwargs, generator)
        device_sync(device)
        return time.perf_counter() - start

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
