"""Issue 13 kind 5: every listed sampler x steps x strength runs, or is refused at submit.

What runs is what the artist asked: exactly ``steps`` model steps (Heun: 2 x steps - 1 UNet
calls, its second-order steps evaluate twice), progress ``steps / steps``, a finite picture.
A pair that cannot run as asked (more steps than the strength's window of the schedule has)
is refused by ``check_request`` naming ``steps`` or ``strength``.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import InvalidRequest  # noqa: E402
from backend.engine.request_checks import MAX_STEPS  # noqa: E402
from backend.engine.schedulers import (  # noqa: E402
    MAX_SCHEDULE,
    check_steps,
    max_steps,
    sampler_names,
    schedule_length,
)
from backend.engine.types import EngineConfig, GenerationRequest, Progress  # noqa: E402

SIZE = 64
#: (steps, strength): the issue's example, the smallest strengths, the longest schedules.
GRID = [(3, 0.05), (1, 1.0), (2, 0.003), (1, 0.00101), (4, 0.5), (9, 0.01)]


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)))


@pytest.fixture(scope="module")
def unet_calls(engine: Engine) -> list[int]:
    """A counter of UNet forward calls on every tiny model the tests load."""
    counter = [0]
    for name in ("tiny", "tiny-inpaint"):
        loaded = engine._load(name)
        loaded.pipe.unet.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def make_request(mode: str, sampler: str, steps: int, strength: float, model: str = "tiny"):
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., 0] = np.arange(SIZE, dtype=np.uint8)[None, :] * 3
    image[..., 1:3] = 100
    image[..., 3] = 255
    fields: dict = {
        "mode": mode,
        "width": SIZE,
        "height": SIZE,
        "model": model,
        "sampler": sampler,
        "steps": steps,
        "strength": strength,
        "seed": 5,
        "image": None if mode == "txt2img" else image,
    }
    if mode == "inpaint":
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[16:48, 16:48] = 255
        fields["mask"] = mask
    return GenerationRequest(**fields)


def run_as_asked(engine: Engine, unet_calls: list[int], request: GenerationRequest) -> None:
    """The request runs with exactly its steps, and makes a finite picture."""
    events: list[Progress] = []
    unet_calls[0] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NaN latents -> "invalid value in cast"
        layers = engine.generate(request, on_progress=events.append)
    order = 2 if request.sampler == "heun" else 1
    assert unet_calls[0] == order * request.steps - (order - 1)
    assert (events[-1].step, events[-1].total) == (request.steps, request.steps)
    assert layers[0].metadata.steps == request.steps
    assert layers[0].image[..., :3].std() > 0.5  # a picture, not a flat (NaN) fill


@pytest.mark.parametrize("sampler", sampler_names())
@pytest.mark.parametrize(("steps", "strength"), GRID)
def test_every_sampler_runs_img2img_as_asked(
    engine: Engine, unet_calls: list[int], sampler: str, steps: int, strength: float
) -> None:
    run_as_asked(engine, unet_calls, make_request("img2img", sampler, steps, strength))


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_sampler_runs_inpaint_on_an_inpaint_model(
    engine: Engine, unet_calls: list[int], sampler: str
) -> None:
    request = make_request("inpaint", sampler, 3, 0.05, model="tiny-inpaint")
    run_as_asked(engine, unet_calls, request)


@pytest.mark.parametrize("sampler", ["lcm", "tcd"])
def test_few_step_samplers_run_more_steps_than_their_grid(
    engine: Engine, unet_calls: list[int], sampler: str
) -> None:
    """LCM/TCD choose timesteps from a 50-step grid: txt2img with 60 steps still runs."""
    request = make_request("txt2img", sampler, 60, 1.0)
    run_as_asked(engine, unet_calls, request)


def test_the_issue_example_runs(engine: Engine, unet_calls: list[int]) -> None:
    """img2img, lcm, 3 steps, strength 0.05: an internal error before."""
    run_as_asked(engine, unet_calls, make_request("img2img", "lcm", 3, 0.05))


@pytest.mark.parametrize(
    ("steps", "strength", "field"),
    [(150, 0.1, "steps"), (4, 0.004, "steps"), (1, 0.0005, "strength"), (1, 1e-9, "strength")],
)
@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_pairs_that_cannot_run_are_refused_naming_the_field(
    engine: Engine, steps: int, strength: float, field: str, mode: str
) -> None:
    request = make_request(mode, "euler", steps, strength)
    with pytest.raises(InvalidRequest) as info:
        engine.check_request(request)
    assert info.value.field == field
    assert "strength" in str(info.value)


def test_txt2img_and_outpaint_ignore_strength(engine: Engine) -> None:
    """Their strength is 1: every steps value of the schema runs."""
    for mode in ("txt2img", "outpaint"):
        request = make_request(mode, "lcm", MAX_STEPS, 0.0001)
        if mode == "outpaint":
            request.mask = np.full((SIZE, SIZE), 255, np.uint8)
        engine.check_request(request)


@settings(max_examples=2000, deadline=None)
@given(
    steps=st.integers(1, MAX_STEPS),
    strength=st.floats(0.0, 1.0, exclude_min=True, allow_nan=False),
)
def test_schedule_runs_exactly_the_steps_or_is_refused(steps: int, strength: float) -> None:
    """The planning rule, for every pair of the schema: refused, or a schedule no longer
    than MAX_SCHEDULE whose strength window holds exactly ``steps`` (as diffusers cuts it)."""
    try:
        check_steps(steps, strength)
    except InvalidRequest as error:
        assert error.field in ("steps", "strength")
        assert steps > max_steps(strength)
        return
    total = schedule_length(steps, strength)
    assert steps <= total <= MAX_SCHEDULE
    kept = steps if strength >= 1.0 else min(int(total * strength), total)
    assert kept == steps


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sampler=st.sampled_from(sampler_names()),
    mode=st.sampled_from(["img2img", "inpaint"]),
    steps=st.integers(1, 12),
    strength=st.floats(0.0005, 1.0, allow_nan=False),
)
def test_random_pairs_run_or_are_refused(
    engine: Engine, unet_calls: list[int], sampler: str, mode: str, steps: int, strength: float
) -> None:
    request = make_request(mode, sampler, steps, strength)
    try:
        engine.check_request(request)
    except InvalidRequest as error:
        assert error.field in ("steps", "strength")
        return
    run_as_asked(engine, unet_calls, request)
