"""Task pipelines share one set of weights; step counts and call arguments are right."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from backend.engine.errors import InvalidRequest  # noqa: E402
from backend.engine.pipelines import (  # noqa: E402
    ControlTask,
    DenoiseTask,
    PipelineCache,
    build_call_kwargs,
    inference_steps,
    pipeline_kind,
)
from backend.engine.prompts import PromptEncoder  # noqa: E402
from backend.engine.schedulers import MAX_SCHEDULE, max_steps  # noqa: E402


@dataclass
class Loaded:
    name: str
    family: str
    inpaint: bool
    pipe: Any


@pytest.fixture(scope="module")
def half_model() -> Loaded:
    """A tiny SD1.5 model in bfloat16 (as a GPU would hold it in half precision)."""
    from backend.engine.tiny import build_tiny_pipeline

    return Loaded("tiny-bf16", "sd15", False, build_tiny_pipeline("sd15").to(torch.bfloat16))


@pytest.fixture(scope="module")
def controlnet() -> Any:
    from backend.engine.tiny import build_tiny_controlnet

    return build_tiny_controlnet("sd15").to(torch.bfloat16)


def test_inference_steps_run_what_the_artist_asked() -> None:
    assert inference_steps(20, 1.0) == 20
    for steps in range(1, 151):
        for percent in range(1, 100):
            strength = percent / 100
            if steps > max_steps(strength):
                continue  # refused at submit (check_steps)
            total = inference_steps(steps, strength)
            assert total <= MAX_SCHEDULE and int(total * strength) == steps, (steps, strength)


def test_pipeline_kind() -> None:
    assert pipeline_kind("img2img", False) == "img2img"
    assert pipeline_kind("txt2img", True) == "inpaint"  # 9-channel UNets only inpaint
    with pytest.raises(InvalidRequest):
        pipeline_kind("sketch", False)


def test_task_pipelines_share_weights_and_keep_the_dtype(
    half_model: Loaded, controlnet: Any
) -> None:
    cache = PipelineCache()
    control = ControlTask("cn", controlnet, np.zeros((64, 64, 3), np.uint8))
    pipes = [cache.get(half_model, kind, []) for kind in ("txt2img", "img2img", "inpaint")]
    pipes += [cache.get(half_model, "inpaint", [control, control])]
    for pipe in pipes:
        assert pipe.unet is half_model.pipe.unet
        assert pipe.vae is half_model.pipe.vae
        assert pipe.text_encoder is half_model.pipe.text_encoder
    assert type(pipes[3]).__name__ == "StableDiffusionControlNetInpaintPipeline"
    # from_pipe must not have cast the shared modules to float32
    assert half_model.pipe.unet.dtype == torch.bfloat16
    assert controlnet.dtype == torch.bfloat16
    assert cache.get(half_model, "img2img", []) is pipes[1]  # cached
    # another model replaces the cache
    other = Loaded("other", "sd15", False, half_model.pipe.__class__(**half_model.pipe.components))
    assert cache.get(other, "img2img", []) is not pipes[1]


def test_call_kwargs_for_two_controls(half_model: Loaded, controlnet: Any) -> None:
    embeds = PromptEncoder().encode(half_model.pipe, "a", "", model="m", family="sd15")
    controls = [
        ControlTask("a", controlnet, np.zeros((64, 64, 3), np.uint8), 0.5, 0.1, 0.9),
        ControlTask("b", controlnet, np.ones((64, 64, 3), np.uint8), 1.5, 0.0, 0.5),
    ]
    task = DenoiseTask(
        kind="inpaint",
        model=half_model,
        width=64,
        height=64,
        embeds=embeds,
        seeds=[5, 6],
        steps=4,
        strength=0.5,
        image=np.zeros((64, 64, 3), np.uint8),
        mask=np.ones((64, 64), np.float32),
        controls=controls,
    )
    pipe = PipelineCache().get(half_model, "inpaint", controls)
    kwargs = build_call_kwargs(pipe, task, "inpaint")
    assert kwargs["num_inference_steps"] == 8 and kwargs["strength"] == 0.5
    assert kwargs["controlnet_conditioning_scale"] == [0.5, 1.5]
    assert kwargs["control_guidance_start"] == [0.1, 0.0]
    assert kwargs["control_guidance_end"] == [0.9, 0.5]
    assert len(kwargs["control_image"]) == 2 and kwargs["mask_image"].mode == "L"
    # one call per item, with the item's own CPU generator
    assert [g.initial_seed() for g in kwargs["generator"]] == [5]
    second = build_call_kwargs(pipe, task, "inpaint", item=1)
    assert [g.initial_seed() for g in second["generator"]] == [6]
    assert all(g.device.type == "cpu" for g in kwargs["generator"] + second["generator"])
    assert kwargs["num_images_per_prompt"] == 1
