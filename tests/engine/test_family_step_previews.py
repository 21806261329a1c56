"""Step previews of the transformer families through the real Engine with a progress callback
(as the API always passes one): Qwen-Image's unpacked latents carry a frame axis
(B, C, 1, h, w) and a job must never fail for its preview."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engine.families import tiny_qwen
from backend.engine.previews import step_preview
from backend.engine.types import GenerationRequest


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    root = tmp_path_factory.mktemp("preview-models")
    tiny_qwen.write_tiny_qwen_image(root, "base")
    return Engine(EngineConfig(models_dir=str(root), device="cpu", dtype="float32"))


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_a_qwen_image_job_with_progress_reports_every_step_with_a_preview(engine, mode) -> None:
    image = np.dstack([np.full((64, 64, 3), 128, np.uint8), np.full((64, 64), 255, np.uint8)])
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    request = GenerationRequest(
        mode=mode,
        width=64,
        height=64,
        prompt="a red square",
        model="tiny_qwen_image_base",
        steps=2,
        sampler="euler",
        cfg_scale=1.0,
        seed=7,
        strength=0.75 if mode == "img2img" else 1.0,
        image=None if mode == "txt2img" else image,
        mask=mask if mode == "inpaint" else None,
    )
    progress: list = []
    layers = engine.generate(request, progress.append)
    assert len(layers) == 1 and layers[0].image.shape[2] == 4
    # every denoising step reported once, in order (img2img at 0.75 once ran 3 steps of 2)
    assert [p.step for p in progress] == [1, 2] and progress[-1].total == 2
    previews = [p.preview for p in progress if p.preview is not None]
    assert previews and all(p.ndim == 3 and p.shape[2] == 3 for p in previews)


def test_latents_of_another_shape_give_no_preview_instead_of_an_error() -> None:
    import torch

    assert step_preview(torch.zeros(1, 3, 8, 8), "sd15") is None  # 3 channels, SD has 4
    assert step_preview(torch.zeros(1, 64, 128), "sd15") is None  # packed tokens
    single_frame = step_preview(torch.zeros(1, 4, 1, 8, 8), "sd15")
    assert single_frame is not None and single_frame.shape[2] == 3


@pytest.mark.parametrize("strength", [0.75, 0.5, 0.3, 0.9])
@pytest.mark.parametrize("steps", [1, 2, 5, 20])
@pytest.mark.parametrize("flow", [False, True])
def test_the_schedule_runs_exactly_the_steps_asked(steps, strength, flow) -> None:
    """SD pipelines keep int(N * strength) steps, flow-matching ones N - int(N - N * strength):
    each gets the schedule length that runs exactly ``steps`` (Qwen-Image img2img at 0.75 once
    ran 3 steps of 2)."""
    from backend.engine.schedulers import schedule_length, steps_run

    total = schedule_length(steps, strength, flow)
    assert steps_run(total, strength, flow) == steps
    # and the skipped part of the schedule is within one step of 1 - strength (a flow
    # schedule of just ``steps`` would start from pure noise at any strength)
    assert abs((total - steps) / total - (1 - strength)) < 1 / total + 1e-9
    # diffusers' own truncation, written out as each pipeline's get_timesteps does it
    if flow:
        assert total - int(max(total - min(total * strength, total), 0)) == steps
    else:
        assert total - max(total - min(int(total * strength), total), 0) == steps
