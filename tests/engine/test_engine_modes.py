"""Every mode through the real Engine with the tiny models (random weights, 2 steps)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.types import EngineConfig, GenerationRequest, InpaintSettings  # noqa: E402

W, H = 96, 64
LONG_PROMPT = " ".join(f"word{i % 40} red blue" for i in range(67))  # about 200 tokens


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return Engine(config)


def region() -> np.ndarray:
    """A region with structure: gradient background, a dark disc, opaque everywhere."""
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.zeros((H, W, 4), np.uint8)
    image[..., 0] = (xx * 255 // (W - 1)).astype(np.uint8)
    image[..., 1] = (yy * 255 // (H - 1)).astype(np.uint8)
    image[..., 2] = 90
    image[(xx - 60) ** 2 + (yy - 30) ** 2 < 15**2, :3] = 20
    image[..., 3] = 255
    return image


def box_mask(x: int = 30, y: int = 16, w: int = 40, h: int = 32, value: int = 255) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y : y + h, x : x + w] = value
    return mask


def request(mode: str, **changes: object) -> GenerationRequest:
    base: dict = {
        "mode": mode,
        "width": W,
        "height": H,
        "prompt": "a red cat on a sofa",
        "negative_prompt": "blurry",
        "steps": 2,
        "seed": 7,
        "model": "tiny",
        "sampler": "euler",
    }
    if mode != "txt2img":
        base["image"] = region()
    if mode in ("inpaint", "outpaint"):
        base["mask"] = box_mask()
    base.update(changes)
    return GenerationRequest(**base)


def assert_opaque_region(layer: object) -> None:
    assert (layer.x, layer.y) == (0, 0)
    assert layer.image.shape == (H, W, 4) and layer.image.dtype == np.uint8
    assert (layer.image[..., 3] == 255).all()
    assert layer.image[..., :3].std() > 1.0  # an image, not a flat fill


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl", "tiny-inpaint", "tiny-sdxl-inpaint"])
def test_txt2img(engine: Engine, model: str) -> None:
    layers = engine.generate(request("txt2img", model=model, batch=2))
    assert [layer.seed for layer in layers] == [7, 8]
    for layer in layers:
        assert_opaque_region(layer)
        assert layer.metadata.model == model and layer.metadata.mode == "txt2img"
    assert not np.array_equal(layers[0].image, layers[1].image)
    assert engine.loaded_model == model


def test_seeds_reproduce_and_batch_seeds_follow(engine: Engine) -> None:
    batch = engine.generate(request("txt2img", seed=100, batch=2, width=64))
    again = engine.generate(request("txt2img", seed=100, batch=2, width=64))
    for first, second in zip(batch, again, strict=True):
        assert np.array_equal(first.image, second.image)
    single = engine.generate(request("txt2img", seed=101, width=64))[0]
    assert single.seed == batch[1].seed == 101
    # the same pixels as the batch's second image (batched matmuls may round differently)
    diff = np.abs(single.image.astype(int) - batch[1].image.astype(int)).max()
    assert diff <= 1
    assert [layer.metadata.seed for layer in batch] == [100, 101]


def test_prompt_changes_the_image(engine: Engine) -> None:
    cat = engine.generate(request("txt2img", prompt="a cat"))[0].image
    dog = engine.generate(request("txt2img", prompt="a dog in the snow"))[0].image
    assert not np.array_equal(cat, dog)


def test_long_prompt_is_used_whole(engine: Engine) -> None:
    words = LONG_PROMPT.split()
    long = engine.generate(request("txt2img", prompt=LONG_PROMPT))[0]
    cut = engine.generate(request("txt2img", prompt=" ".join(words[:25])))[0]
    assert_opaque_region(long)
    assert not np.array_equal(long.image, cut.image)
    assert long.metadata.prompt == LONG_PROMPT


def test_img2img_strength(engine: Engine) -> None:
    totals: list[int] = []
    low = engine.generate(
        request("img2img", strength=0.3, steps=3), on_progress=lambda p: totals.append(p.total)
    )[0]
    high = engine.generate(request("img2img", strength=1.0, steps=3))[0]
    assert_opaque_region(low)
    assert_opaque_region(high)
    assert not np.array_equal(low.image, high.image)
    # the artist's step count is what runs, whatever the strength
    assert totals == [3, 3, 3]
    assert low.metadata.strength == pytest.approx(0.3)


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl", "tiny-inpaint", "tiny-sdxl-inpaint"])
def test_inpaint_layer_is_the_selection(engine: Engine, model: str) -> None:
    mask = box_mask(30, 16, 40, 32)
    layer = engine.generate(request("inpaint", model=model, mask=mask))[0]
    # trimmed to the selection, placed at its offset in the region
    assert (layer.x, layer.y) == (30, 16)
    assert layer.image.shape == (32, 40, 4)
    alpha = layer.image[..., 3]
    assert alpha[8:-8, 8:-8].min() == 255  # opaque well inside
    assert alpha.max() == 255


def test_inpaint_outside_selection_is_transparent(engine: Engine) -> None:
    mask = np.zeros((H, W), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    mask[(xx - 48) ** 2 + (yy - 32) ** 2 < 20**2] = 255  # a disc: corners of its box unselected
    layer = engine.generate(request("inpaint", mask=mask, batch=2))[0]
    placed = np.zeros((H, W), np.uint8)
    placed[layer.y : layer.y + layer.height, layer.x : layer.x + layer.width] = layer.image[..., 3]
    assert (placed[mask == 0] == 0).all()
    assert (placed[mask == 255] > 0).mean() > 0.9
    # and the transparent pixels carry no colour
    assert (layer.image[layer.image[..., 3] == 0, :3] == 0).all()


def test_soft_mask_gives_soft_alpha(engine: Engine) -> None:
    mask = box_mask(24, 8, 48, 48, value=128)
    settings = InpaintSettings(feather=0)
    layer = engine.generate(request("inpaint", mask=mask, inpaint=settings))[0]
    alpha = layer.image[..., 3].astype(int)
    assert layer.image.shape[:2] == (48, 48)
    assert np.abs(alpha - 128).max() <= 1


def test_inpaint_refine_differs_from_fill(engine: Engine) -> None:
    refine = engine.generate(request("inpaint", strength=0.4))[0]
    fill = engine.generate(request("inpaint", strength=1.0))[0]
    assert refine.image.shape == fill.image.shape
    assert not np.array_equal(refine.image, fill.image)


def test_outpaint_fills_transparent_pixels(engine: Engine) -> None:
    image = region()
    image[:, 64:, 3] = 0  # right third is empty canvas
    image[:, 64:, :3] = 0
    mask = np.zeros((H, W), np.uint8)
    mask[:, 56:] = 255
    layer = engine.generate(request("outpaint", image=image, mask=mask, strength=0.2))[0]
    assert (layer.x, layer.y) == (56, 0)
    assert layer.image.shape == (H, W - 56, 4)
    right = layer.image[:, 10:]
    assert (right[..., 3] == 255).all()
    assert right[..., :3].std() > 1.0  # generated, not the black hole
    assert layer.metadata.strength == 1.0  # forced: nothing to refine there


def test_metadata(engine: Engine) -> None:
    layer = engine.generate(request("inpaint", clip_skip=2, cfg_scale=5.5))[0]
    meta = layer.metadata
    assert (meta.prompt, meta.negative_prompt) == ("a red cat on a sofa", "blurry")
    assert (meta.sampler, meta.steps, meta.cfg_scale, meta.clip_skip) == ("euler", 2, 5.5, 2)
    assert (meta.width, meta.height, meta.mode, meta.seed) == (W, H, "inpaint", 7)


def test_stochastic_and_few_step_samplers_run(engine: Engine) -> None:
    for name in ("euler_a", "dpmpp_2m_sde_karras", "lcm"):
        layer = engine.generate(request("txt2img", sampler=name, width=64, height=64))[0]
        assert layer.image.shape == (64, 64, 4), name
        assert layer.image[..., :3].std() > 0.5, name
