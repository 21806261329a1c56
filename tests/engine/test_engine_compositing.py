"""Geometry, colour matching and compositing through the real ``Engine.generate`` path, with a
deterministic stand-in for the model call (``Engine._denoise``): it returns the image it was
given with a known colour shift, so every pixel of the result can be predicted."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.compositing import flatten  # noqa: E402
from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import OutOfMemory  # noqa: E402
from backend.engine.pipelines import DenoiseTask, StepCallback  # noqa: E402
from backend.engine.types import (  # noqa: E402
    ControlInput,
    EngineConfig,
    GenerationRequest,
    InpaintSettings,
)

W, H = 128, 96
SHIFT = np.array([40, -30, 25])


class ShiftEngine(Engine):
    """The real engine with the denoiser replaced by 'source pixels + SHIFT'."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.tasks: list[DenoiseTask] = []
        self.fail_with: BaseException | None = None

    def _denoise(self, task: DenoiseTask, on_step: StepCallback) -> np.ndarray:
        self.tasks.append(task)
        if self.fail_with is not None:
            raise self.fail_with
        if task.image is None:
            source = np.full((task.height, task.width, 3), 100, np.int32)
        else:
            source = task.image.astype(np.int32)
        out = [np.clip(source + SHIFT + index, 0, 255) for index in range(len(task.seeds))]
        return np.stack(out).astype(np.uint8)


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> ShiftEngine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return ShiftEngine(config)


def smooth_region() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.empty((H, W, 4), np.uint8)
    image[..., 0] = 60 + xx // 4
    image[..., 1] = 120 + yy // 4
    image[..., 2] = 150
    image[..., 3] = 255
    return image


def selection(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y : y + h, x : x + w] = 255
    return mask


def inpaint(**changes: object) -> GenerationRequest:
    base: dict = {
        "mode": "inpaint",
        "width": W,
        "height": H,
        "prompt": "grass",
        "steps": 2,
        "model": "tiny",
        "image": smooth_region(),
        "mask": selection(40, 30, 48, 36),
    }
    base.update(changes)
    return GenerationRequest(**base)


def test_colour_match_undoes_a_colour_cast(engine: ShiftEngine) -> None:
    original = smooth_region()[30:66, 40:88, :3].astype(int)
    matched = engine.generate(inpaint())[0]
    raw = engine.generate(inpaint(inpaint=InpaintSettings(color_match=False)))[0]
    inner = (slice(6, -6), slice(6, -6))
    raw_error = np.abs(raw.image[inner][..., :3] - original[inner]).mean(axis=(0, 1))
    matched_error = np.abs(matched.image[inner][..., :3] - original[inner]).mean(axis=(0, 1))
    assert raw_error.min() > 20  # the cast is there without matching ...
    assert matched_error.max() < 6  # ... and gone with it


def test_layer_is_placed_and_leaves_the_rest_untouched(engine: ShiftEngine) -> None:
    region = smooth_region()
    mask = np.zeros((H, W), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    mask[(xx - 70) ** 2 + (yy - 50) ** 2 < 22**2] = 255
    layer = engine.generate(inpaint(mask=mask, inpaint=InpaintSettings(color_match=False)))[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (49, 29, 43, 43)
    merged = flatten(region, layer.image, layer.x, layer.y)
    assert np.array_equal(merged[mask == 0], region[mask == 0])
    core = (xx - 70) ** 2 + (yy - 50) ** 2 < 12**2
    change = merged[core][:, :3].astype(int) - region[core][:, :3]
    assert np.abs(change - SHIFT).max() <= 3  # inside: the generated pixels


def test_selection_at_the_border_is_clipped(engine: ShiftEngine) -> None:
    layer = engine.generate(inpaint(mask=selection(0, 70, 30, 26)))[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (0, 70, 30, 26)
    task = engine.tasks[-1]
    assert task.width % 8 == 0 and task.height % 8 == 0
    assert 0.6 < task.width * task.height / 64**2 < 1.5  # about the model's native area


def test_denoise_task_gets_the_grown_mask(engine: ShiftEngine) -> None:
    engine.generate(inpaint(mask=selection(40, 30, 48, 36)))
    task = engine.tasks[-1]
    assert task.kind == "inpaint" and task.mask is not None
    assert task.mask.shape == (task.height, task.width) and task.mask.dtype == np.float32
    assert task.mask.max() == pytest.approx(1.0)
    assert task.mask[0, 0] == 0.0  # the context corner is not repainted
    assert task.image is not None and task.image.shape == (task.height, task.width, 3)


def test_batch_layers_follow_their_seeds(engine: ShiftEngine) -> None:
    layers = engine.generate(inpaint(batch=3, seed=40, inpaint=InpaintSettings(color_match=False)))
    assert [layer.seed for layer in layers] == [40, 41, 42]
    assert engine.tasks[-1].seeds == [40, 41, 42]
    assert not np.array_equal(layers[0].image, layers[2].image)


def test_outpaint_prefills_the_empty_canvas(engine: ShiftEngine) -> None:
    image = smooth_region()
    image[:, 96:] = 0  # transparent, black under
    layer = engine.generate(
        inpaint(mode="outpaint", image=image, mask=selection(88, 0, 40, H), strength=0.5)
    )[0]
    assert engine.tasks[-1].strength == 1.0
    assert (layer.x, layer.y) == (88, 0)
    new = layer.image[:, 16:]
    assert (new[..., 3] == 255).all()
    assert new[..., :3].mean() > 60  # the prefill continued the colours; no black hole


def test_txt2img_and_img2img_cover_the_region(engine: ShiftEngine) -> None:
    layer = engine.generate(GenerationRequest(mode="txt2img", width=W, height=H, model="tiny"))[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (0, 0, W, H)
    assert (layer.image[..., 3] == 255).all()
    assert np.abs(layer.image[..., :3].astype(int) - (100 + SHIFT)).max() <= 1
    region = smooth_region()
    refined = engine.generate(
        GenerationRequest(
            mode="img2img", width=W, height=H, model="tiny", image=region, strength=0.5
        )
    )[0]
    assert refined.image.shape == (H, W, 4)
    change = refined.image[8:-8, 8:-8, :3].astype(int) - region[8:-8, 8:-8, :3]
    assert np.abs(change - SHIFT).mean() < 3


def test_control_maps_are_cropped_like_the_image(engine: ShiftEngine) -> None:
    region = smooth_region()
    control = ControlInput("tile", region, preprocess=False)
    engine.generate(inpaint(controls=[control, control]))
    task = engine.tasks[-1]
    assert [c.name for c in task.controls] == ["tiny-controlnet", "tiny-controlnet"]
    assert np.array_equal(task.controls[0].image, task.image)
    engine.generate(
        GenerationRequest(
            mode="img2img", width=W, height=H, model="tiny", image=region, controls=[control]
        )
    )
    task = engine.tasks[-1]
    assert np.array_equal(task.controls[0].image, task.image)


def test_out_of_memory_becomes_a_clear_error(engine: ShiftEngine) -> None:
    engine.fail_with = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    try:
        with pytest.raises(OutOfMemory) as info:
            engine.generate(inpaint())
        assert "out of memory" in info.value.message.lower()
        engine.fail_with = RuntimeError("something else broke")
        with pytest.raises(RuntimeError, match="something else"):
            engine.generate(inpaint())
    finally:
        engine.fail_with = None
    assert engine.generate(inpaint())[0].image.shape[2] == 4  # and the engine still works
