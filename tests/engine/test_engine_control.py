"""ControlNet, LoRA, progress and cancel with the real tiny models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import Cancelled  # noqa: E402
from backend.engine.types import (  # noqa: E402
    CancelToken,
    ControlInput,
    EngineConfig,
    GenerationRequest,
    LoraInput,
    Progress,
)

W = H = 64


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return Engine(config)


def sketch() -> np.ndarray:
    image = np.full((H, W, 4), 255, np.uint8)
    image[20:44, 20:44, :3] = 0  # a black square on white paper
    image[30:34, :, :3] = 0
    return image


def request(**changes: object) -> GenerationRequest:
    base: dict = {
        "mode": "txt2img",
        "width": W,
        "height": H,
        "prompt": "a house",
        "steps": 2,
        "seed": 3,
        "model": "tiny",
        "sampler": "euler",
    }
    base.update(changes)
    return GenerationRequest(**base)


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_two_controls_steer_the_image(engine: Engine, model: str) -> None:
    plain = engine.generate(request(model=model))[0].image
    controls = [
        ControlInput("canny", sketch(), strength=1.5),
        ControlInput("scribble", sketch(), strength=1.0, start=0.0, end=0.5),
    ]
    steered = engine.generate(request(model=model, controls=controls))[0]
    assert steered.image.shape == (H, W, 4)
    assert np.abs(steered.image.astype(int) - plain).mean() > 0.5
    assert [c["type"] for c in steered.metadata.controls] == ["canny", "scribble"]
    # strength 0 leaves the UNet's result as without control
    off = [ControlInput("canny", sketch(), strength=0.0)]
    unsteered = engine.generate(request(model=model, controls=off))[0].image
    assert np.abs(unsteered.astype(int) - plain).max() <= 1


def stripes() -> np.ndarray:
    image = np.full((H, W, 4), 255, np.uint8)
    image[::8, :, :3] = 0  # horizontal lines every 8 px
    return image


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_different_control_images_give_different_results(engine: Engine, model: str) -> None:
    def steered(image: np.ndarray) -> np.ndarray:
        controls = [ControlInput("lineart", image)]
        return engine.generate(request(model=model, controls=controls))[0].image.astype(int)

    square, lines = steered(sketch()), steered(stripes())
    assert np.abs(square - lines).mean() > 0.5
    assert np.array_equal(square, steered(sketch()))  # and the same one the same result


def test_control_with_inpaint(engine: Engine) -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[16:48, 16:48] = 255
    image = np.full((H, W, 4), 200, np.uint8)
    controls = [ControlInput("lineart", sketch())]
    layer = engine.generate(request(mode="inpaint", image=image, mask=mask, controls=controls))[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (16, 16, 32, 32)


def test_lora_applies_for_one_job_only(engine: Engine) -> None:
    baseline = engine.generate(request())[0].image
    with_lora = engine.generate(request(loras=[LoraInput("tiny-lora", 1.0)]))[0]
    assert np.abs(with_lora.image.astype(int) - baseline).mean() > 0.5
    assert with_lora.metadata.loras == [{"name": "tiny-lora", "weight": 1.0}]
    after = engine.generate(request())[0].image
    assert np.array_equal(after, baseline)


def test_progress_reports_every_step_with_a_preview(engine: Engine) -> None:
    events: list[Progress] = []
    engine.generate(request(steps=3), on_progress=events.append)
    assert [(event.step, event.total) for event in events] == [(1, 3), (2, 3), (3, 3)]
    for event in events:
        assert event.preview is not None and event.preview.dtype == np.uint8
        assert event.preview.ndim == 3 and event.preview.shape[2] == 3
        assert event.preview.shape[0] <= H and event.preview.shape[1] <= W


def test_cancel_stops_within_one_step(engine: Engine) -> None:
    token = CancelToken()
    steps: list[int] = []

    def on_progress(event: Progress) -> None:
        steps.append(event.step)
        token.cancel()  # the artist presses cancel during step 1

    with pytest.raises(Cancelled):
        engine.generate(request(steps=6), on_progress=on_progress, cancel=token)
    assert steps == [1]
    # already cancelled: nothing runs
    with pytest.raises(Cancelled):
        engine.generate(request(), on_progress=steps.append, cancel=token)
    assert steps == [1]
    # and the next job is unaffected
    assert engine.generate(request())[0].image.shape == (H, W, 4)
