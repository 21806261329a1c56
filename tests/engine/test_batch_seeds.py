"""Issue 13 kind 1: item i of a batch is the single run with seed + i, in every mode.

Every random draw of an item (the VAE encoding of its source, its starting noise, the noise
of ancestral/SDE steps, the fill noise under transparent pixels) comes from its own seed, so
a batch item can be re-made alone. Checked for every mode on the SD1.5 and SDXL tiny models,
regular and 9-channel inpaint, with and without a ControlNet.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.types import (  # noqa: E402
    ControlInput,
    EngineConfig,
    GenerationRequest,
    Progress,
)

W = H = 64
MODELS = ["tiny", "tiny-inpaint", "tiny-sdxl", "tiny-sdxl-inpaint"]


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)))


def region(transparent_right: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.zeros((H, W, 4), np.uint8)
    image[..., 0] = xx * 4
    image[..., 1] = yy * 4
    image[..., 2] = 90
    image[..., 3] = 255
    if transparent_right:
        image[:, 40:, 3] = 0  # off the canvas: filled with seeded noise before denoising
    return image


def square_mask() -> np.ndarray:
    """The issue's example: a white 32x32 square at (16, 16)."""
    mask = np.zeros((H, W), np.uint8)
    mask[16:48, 16:48] = 255
    return mask


def make_request(model: str, mode: str, **changes: object) -> GenerationRequest:
    fields: dict = {
        "mode": mode,
        "width": W,
        "height": H,
        "model": model,
        "prompt": "a cat",
        "sampler": "euler",
        "steps": 2,
        "seed": 1234,
    }
    if mode == "img2img":
        fields.update(image=region(transparent_right=True), strength=0.6)
    elif mode == "inpaint":
        fields.update(image=region(), mask=square_mask())
    elif mode == "outpaint":
        right = np.zeros((H, W), np.uint8)
        right[:, 36:] = 255
        fields.update(image=region(transparent_right=True), mask=right)
    fields.update(changes)
    return GenerationRequest(**fields)


def assert_items_are_single_runs(engine: Engine, request: GenerationRequest) -> None:
    batch = engine.generate(GenerationRequest(**{**request.__dict__, "batch": 3}))
    assert [layer.seed for layer in batch] == [request.seed, request.seed + 1, request.seed + 2]
    for index, item in enumerate(batch):
        single = engine.generate(
            GenerationRequest(**{**request.__dict__, "batch": 1, "seed": request.seed + index})
        )[0]
        assert (item.x, item.y, item.image.shape) == (single.x, single.y, single.image.shape)
        difference = np.abs(item.image.astype(int) - single.image.astype(int)).max()
        assert difference == 0, f"item {index} differs from seed {request.seed + index}"
    # and the items are distinct pictures
    assert not np.array_equal(batch[0].image, batch[1].image)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint", "outpaint"])
def test_batch_items_are_their_single_runs(engine: Engine, model: str, mode: str) -> None:
    assert_items_are_single_runs(engine, make_request(model, mode))


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl-inpaint"])
@pytest.mark.parametrize("sampler", ["euler_a", "dpmpp_2m_sde_karras", "tcd"])
def test_noisy_samplers_draw_per_item(engine: Engine, model: str, sampler: str) -> None:
    """Ancestral/SDE/TCD steps draw fresh noise every step: from the item's own seed."""
    assert_items_are_single_runs(engine, make_request(model, "inpaint", sampler=sampler))


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
@pytest.mark.parametrize("mode", ["inpaint", "img2img"])
def test_batch_items_with_a_controlnet(engine: Engine, model: str, mode: str) -> None:
    control = ControlInput("canny", region(), preprocess=False)
    assert_items_are_single_runs(engine, make_request(model, mode, controls=[control]))


def test_the_issue_example(engine: Engine) -> None:
    """Inpaint 64x64, white 32x32 square at (16,16), euler, 4 steps, seed 1234, batch 3."""
    assert_items_are_single_runs(engine, make_request("tiny", "inpaint", steps=4))


def test_progress_counts_every_item(engine: Engine) -> None:
    events: list[Progress] = []
    engine.generate(make_request("tiny", "inpaint", batch=3), on_progress=events.append)
    assert [(event.step, event.total) for event in events] == [(i, 6) for i in range(1, 7)]
