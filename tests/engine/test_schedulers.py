"""Sampler names -> diffusers schedulers built from the model's own scheduler config."""

from __future__ import annotations

import inspect

import pytest
import torch

from backend.engine.errors import InvalidRequest
from backend.engine.schedulers import (
    SAMPLERS,
    check_sampler,
    is_few_step,
    make_scheduler,
    sampler_names,
)
from backend.engine.tiny import scheduler_config


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_builds_and_steps(name: str) -> None:
    scheduler = make_scheduler(name, scheduler_config("sd15"))
    assert type(scheduler).__name__ == SAMPLERS[name].class_name
    scheduler.set_timesteps(4)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sample = sample * scheduler.init_noise_sigma
    timestep = scheduler.timesteps[0]
    model_input = scheduler.scale_model_input(sample, timestep)
    extra = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        extra["generator"] = torch.Generator().manual_seed(1)
    out = scheduler.step(torch.zeros_like(model_input), timestep, sample, **extra).prev_sample
    assert out.shape == sample.shape
    assert torch.isfinite(out).all()
    # the model's training schedule is kept
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.beta_schedule == "scaled_linear"


def test_karras_changes_the_sigmas() -> None:
    plain = make_scheduler("dpmpp_2m", scheduler_config())
    karras = make_scheduler("dpmpp_2m_karras", scheduler_config())
    plain.set_timesteps(10)
    karras.set_timesteps(10)
    assert karras.config.use_karras_sigmas and not plain.config.use_karras_sigmas
    assert not torch.allclose(plain.sigmas, karras.sigmas)


def test_settings_of_one_sampler_do_not_leak_into_the_next() -> None:
    karras = make_scheduler("dpmpp_2m_karras", scheduler_config())
    euler = make_scheduler("euler", karras.config)
    assert not euler.config.get("use_karras_sigmas", False)
    back = make_scheduler("dpmpp_2m", euler.config)
    assert not back.config.use_karras_sigmas


def test_unknown_sampler_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as info:
        make_scheduler("k_lms_magic", scheduler_config())
    assert info.value.field == "sampler"
    assert "k_lms_magic" in str(info.value)
    with pytest.raises(InvalidRequest):
        check_sampler("")


def test_few_step_samplers() -> None:
    assert is_few_step("lcm") and is_few_step("tcd")
    assert not any(is_few_step(name) for name in sampler_names() if name not in ("lcm", "tcd"))
    with pytest.raises(InvalidRequest):
        is_few_step("nope")


def test_default_sampler_is_listed() -> None:
    from backend.engine.types import GenerationRequest

    assert GenerationRequest(mode="txt2img", width=64, height=64).sampler in sampler_names()
