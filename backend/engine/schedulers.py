"""Sampler names the artist picks, mapped to diffusers schedulers built from a model's config.

A scheduler is cheap to build (no weights), so each job gets a fresh one from the loaded
model's own scheduler config: the model's training schedule (betas, prediction type, timestep
spacing) is kept and only the sampling algorithm changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.engine.errors import InvalidRequest

DEFAULT_SAMPLER = "dpmpp_2m_karras"
#: Training timesteps of every SD1.5/SDXL schedule.
TRAIN_TIMESTEPS = 1000
#: The longest schedule every sampler runs: DPM++ and UniPC with "leading" spacing repeat
#: timesteps (and return NaN) at one step per training timestep.
MAX_SCHEDULE = TRAIN_TIMESTEPS - 1


@dataclass(frozen=True)
class SamplerSpec:
    """How to build one sampler: the diffusers class name and the config overrides."""

    class_name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    few_step: bool = False  # distilled samplers (LCM/TCD): 2-8 steps, CFG about 1


SAMPLERS: dict[str, SamplerSpec] = {
    "euler_a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "euler": SamplerSpec("EulerDiscreteScheduler"),
    "dpmpp_2m": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    "dpmpp_2m_karras": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    # The SDE variant of DPM++ 2M needs no extra package (plain "dpmpp_sde" needs torchsde).
    "dpmpp_2m_sde_karras": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "ddim": SamplerSpec("DDIMScheduler"),
    "unipc": SamplerSpec("UniPCMultistepScheduler"),
    "heun": SamplerSpec("HeunDiscreteScheduler"),
    "lcm": SamplerSpec("LCMScheduler", few_step=True),
    "tcd": SamplerSpec("TCDScheduler", few_step=True),
}

# Keys a scheduler config may carry that only make sense for its own class; dropped before
# building another class so one sampler's settings never leak into the next one.
_PER_CLASS_KEYS = (
    "original_inference_steps",
    "use_karras_sigmas",
    "algorithm_type",
    "solver_order",
    "use_exponential_sigmas",
    "use_beta_sigmas",
)


#: Flow-matching models (Flux.1, Z-Image) sample on their own sigma schedule: "heun" runs
#: Heun, every other sampler name runs flow-matching Euler (the samplers above are built for
#: noise-prediction schedules and cannot take a flow model's shifted sigmas).
FLOW_SAMPLERS = {
    "euler": "FlowMatchEulerDiscreteScheduler",
    "heun": "FlowMatchHeunDiscreteScheduler",
}


def is_flow_config(config: Mapping[str, Any]) -> bool:
    """Whether a model's scheduler config is a flow-matching one (Flux.1, Z-Image)."""
    data = dict(config)
    if str(data.get("_class_name", "")).startswith("FlowMatch"):
        return True
    return "use_dynamic_shifting" in data and "shift" in data  # a FlowMatch*Scheduler's own keys


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def is_few_step(name: str) -> bool:
    """True for distilled few-step samplers (LCM, TCD) that want 2-8 steps and low CFG."""
    check_sampler(name)
    return SAMPLERS[name].few_step


def check_sampler(name: str, field_name: str = "sampler") -> None:
    if name not in SAMPLERS:
        raise InvalidRequest(field_name, name, f"unknown sampler; choose one of {sampler_names()}")


def max_steps(strength: float) -> int:
    """The most denoising steps that can run at ``strength``: a schedule of ``total`` steps
    keeps its last ``int(total * strength)`` (as diffusers truncates), and no schedule is
    longer than ``MAX_SCHEDULE``."""
    if strength >= 1.0:
        return MAX_SCHEDULE
    return int(MAX_SCHEDULE * strength)


def steps_run(total: int, strength: float, flow: bool = False) -> int:
    """The denoising steps diffusers runs of a ``total``-step schedule at ``strength``: SD's
    pipelines keep ``int(total * strength)``; the flow-matching ones (Flux, Z-Image,
    Qwen-Image, ours for FLUX.2 klein) skip ``int(total - total * strength)``."""
    if strength >= 1.0:
        return total
    if flow:
        return total - int(max(total - total * strength, 0))
    return int(total * strength)


def schedule_length(steps: int, strength: float, flow: bool = False) -> int:
    """``num_inference_steps`` so that exactly ``steps`` denoising steps run at ``strength``
    (``steps_run``; ``flow``: a flow-matching pipeline). ``check_steps`` first."""
    if strength >= 1.0:
        return steps
    if flow:
        # the longest schedule that runs ``steps``: its skipped part int(N - N * strength)
        # comes closest to ``1 - strength`` of it (N = steps would start from pure noise)
        total = max(steps, math.floor(steps / max(strength, 1e-6) + 1e-9))
        while steps_run(total, strength, flow) > steps and total > steps:
            total -= 1
        while steps_run(total, strength, flow) < steps and total < MAX_SCHEDULE:
            total += 1
        return min(MAX_SCHEDULE, total)
    total = max(steps, math.ceil(steps / max(strength, 1e-6) - 1e-9))
    while steps_run(total, strength, flow) < steps and total < MAX_SCHEDULE:
        total += 1
    return min(MAX_SCHEDULE, total)


def check_steps(steps: int, strength: float) -> None:
    """Refuse a steps x strength pair that cannot run as asked, naming the parameter to
    change; every listed sampler runs every other pair (see ``make_scheduler``)."""
    limit = max_steps(strength)
    if limit < 1:
        smallest = math.ceil(1e6 / MAX_SCHEDULE) / 1e6
        raise InvalidRequest(
            "strength",
            strength,
            f"is too small to change anything: the smallest strength that runs one step is "
            f"{smallest:g}",
        )
    if steps > limit:
        raise InvalidRequest(
            "steps",
            steps,
            f"at strength {strength:g} at most {limit} steps can run; lower steps to {limit} "
            "or raise strength",
        )


def make_scheduler(name: str, base_config: Mapping[str, Any], schedule: int | None = None) -> Any:
    """A new scheduler of sampler ``name`` built from ``base_config`` (a model's scheduler
    config, e.g. ``pipe.scheduler.config``: its training schedule and prediction type are
    kept whatever the sampler).

    ``schedule``: the ``num_inference_steps`` it will be set to. Few-step samplers (LCM, TCD)
    pick their timesteps from a grid of ``original_inference_steps`` (50); the grid is widened
    to ``schedule`` when that is longer (a low-strength img2img schedules ``steps / strength``
    steps), where diffusers would refuse the schedule.
    """
    check_sampler(name)
    import diffusers

    if is_flow_config(base_config):
        flow_class = getattr(diffusers, FLOW_SAMPLERS.get(name, FLOW_SAMPLERS["euler"]))
        return flow_class.from_config(dict(base_config))
    spec = SAMPLERS[name]
    scheduler_class: Callable[..., Any] = getattr(diffusers, spec.class_name)
    config = {k: v for k, v in dict(base_config).items() if k not in _PER_CLASS_KEYS}
    config.update(spec.overrides)
    scheduler = scheduler_class.from_config(config)
    grid = scheduler.config.get("original_inference_steps")
    if schedule is not None and grid is not None and schedule > int(grid):
        config["original_inference_steps"] = min(schedule, MAX_SCHEDULE)
        scheduler = scheduler_class.from_config(config)
    return scheduler
