"""Sampler names the artist picks, mapped to diffusers schedulers built from a model's config.

A scheduler is cheap to build (no weights), so each job gets a fresh one from the loaded
model's own scheduler config: the model's training schedule (betas, prediction type, timestep
spacing) is kept and only the sampling algorithm changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.engine.errors import InvalidRequest

DEFAULT_SAMPLER = "dpmpp_2m_karras"


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
    "use_karras_sigmas",
    "algorithm_type",
    "solver_order",
    "use_exponential_sigmas",
    "use_beta_sigmas",
)


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def is_few_step(name: str) -> bool:
    """True for distilled few-step samplers (LCM, TCD) that want 2-8 steps and low CFG."""
    check_sampler(name)
    return SAMPLERS[name].few_step


def check_sampler(name: str, field_name: str = "sampler") -> None:
    if name not in SAMPLERS:
        raise InvalidRequest(field_name, name, f"unknown sampler; choose one of {sampler_names()}")


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> Any:
    """A new scheduler of sampler ``name`` built from ``base_config`` (a model's scheduler
    config, e.g. ``pipe.scheduler.config``)."""
    check_sampler(name)
    import diffusers

    spec = SAMPLERS[name]
    scheduler_class: Callable[..., Any] = getattr(diffusers, spec.class_name)
    config = {k: v for k, v in dict(base_config).items() if k not in _PER_CLASS_KEYS}
    config.update(spec.overrides)
    return scheduler_class.from_config(config)
