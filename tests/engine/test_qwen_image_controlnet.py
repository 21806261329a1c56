"""Qwen-Image ControlNets (InstantX's Union layout): detection from the header, the config read
off it, and a control reaching the tiny Qwen-Image's picture through the real Engine (txt2img,
64 px, 2 steps)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engine import families
from backend.engine.detect import detect_controlnet, read_header
from backend.engine.families import qwen_image, tiny_qwen, tiny_qwen_control
from backend.engine.types import ControlInput, GenerationRequest


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen-controlnets")
    tiny_qwen.write_tiny_qwen_image(root, "base")
    tiny_qwen.write_tiny_qwen_image(root, "edit")
    tiny_qwen_control.write_controlnet(root / "controlnet" / "qwen-union.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    return Engine(
        EngineConfig(models_dir=str(models_dir), device="cpu", dtype="float32", cache_models=1)
    )


def _map(column: int = 20) -> np.ndarray:
    image = np.zeros((64, 64, 4), np.uint8)
    image[..., 3] = 255
    image[:, column : column + 4, :3] = 255
    return image


def _request(controls=(), model: str = "tiny_qwen_image_base") -> GenerationRequest:
    return GenerationRequest(
        mode="txt2img",
        width=64,
        height=64,
        prompt="a red square",
        model=model,
        steps=2,
        sampler="euler",
        cfg_scale=1.0,
        seed=7,
        controls=list(controls),
    )


def _control(strength: float = 1.0, column: int = 20) -> ControlInput:
    return ControlInput(
        type="canny", image=_map(column), model="qwen-union", strength=strength, preprocess=False
    )


def test_the_header_tells_a_qwen_image_controlnet(models_dir) -> None:
    keys, _ = read_header(models_dir / "controlnet" / "qwen-union.safetensors")
    assert qwen_image.is_controlnet(keys)
    assert qwen_image.controlnet_config(keys) == tiny_qwen_control.controlnet_config()
    flux_like = {
        "controlnet_blocks.0.weight": (3072, 3072),
        "controlnet_x_embedder.weight": (3072, 64),
    }
    assert not qwen_image.is_controlnet(flux_like)  # no txt_norm: Flux's
    assert detect_controlnet(models_dir / "controlnet" / "qwen-union.safetensors") == "qwen_image"


def test_a_control_changes_the_picture_and_strength_zero_ignores_the_map(engine) -> None:
    plain = engine.generate(_request())[0].image.astype(int)
    controlled = engine.generate(_request([_control()]))[0].image.astype(int)
    assert np.abs(plain - controlled).mean() > 0.5
    # the pipeline samples the map's VAE latent from the seed's generator before the noise
    # (as Flux's does), so strength 0 is not bit-equal to no control; the map no longer counts
    zero = engine.generate(_request([_control(0.0)]))[0].image
    other_zero = engine.generate(_request([_control(0.0, column=40)]))[0].image
    assert np.array_equal(zero, other_zero)


def test_edit_checkpoints_take_no_controlnet(engine) -> None:
    assert families.fits("qwen_image", "qwen_image_edit")  # LoRAs: yes
    assert not families.get("qwen_image_edit").controlnet  # no ControlNet pipeline
