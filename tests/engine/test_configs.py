"""The shipped full-size configs describe the real architectures, and our single-file writer
produces the real key layout for them (checked on the meta device: no memory, no weights)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from backend.engine.checkpoint_format import (
    SDXL_OPENCLIP_PREFIX,
    controlnet_to_ldm_state_dict,
    pipeline_to_ldm_state_dict,
)
from backend.engine.detect import CheckpointKind, kind_from_header
from backend.engine.loader import CONFIGS_DIR

FAMILIES = ("sd15", "sd15-inpaint", "sdxl", "sdxl-inpaint")


def count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def unet(folder: str):
    return UNet2DConditionModel.from_config(
        UNet2DConditionModel.load_config(CONFIGS_DIR / folder / "unet")
    )


def vae(folder: str):
    return AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS_DIR / folder / "vae"))


def text(folder: str, sub: str = "text_encoder"):
    config = CLIPTextConfig.from_pretrained(CONFIGS_DIR / folder / sub)
    return (CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel)(config)


@pytest.fixture(scope="module")
def sd15():
    with init_empty_weights():
        return SimpleNamespace(unet=unet("sd15"), vae=vae("sd15"), text_encoder=text("sd15"))


@pytest.fixture(scope="module")
def sdxl():
    with init_empty_weights():
        return SimpleNamespace(
            unet=unet("sdxl"),
            vae=vae("sdxl"),
            text_encoder=text("sdxl"),
            text_encoder_2=text("sdxl", "text_encoder_2"),
        )


def test_every_family_folder_is_complete() -> None:
    for folder in FAMILIES:
        index = json.loads((CONFIGS_DIR / folder / "model_index.json").read_text())
        for component in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
            assert component in index, (folder, component)
        assert (CONFIGS_DIR / folder / "scheduler" / "scheduler_config.json").is_file()
        inpaint = folder.endswith("-inpaint")
        assert json.loads((CONFIGS_DIR / folder / "unet" / "config.json").read_text())[
            "in_channels"
        ] == (9 if inpaint else 4)


def test_parameter_counts_match_the_known_architectures(sd15, sdxl) -> None:
    assert count(sd15.unet) == 859_520_964
    assert count(sdxl.unet) == 2_567_463_684
    assert count(sd15.vae) == count(sdxl.vae) == 83_653_863
    assert count(sd15.text_encoder) == count(sdxl.text_encoder) == 123_060_480
    assert count(sdxl.text_encoder_2) == 694_659_840  # OpenCLIP ViT-bigG/14 text tower
    with init_empty_weights():
        # The inpaint UNets differ only by the 5 extra conv_in channels (320 * 5 * 3 * 3).
        assert count(unet("sd15-inpaint")) - count(sd15.unet) == 14_400
        assert count(unet("sdxl-inpaint")) - count(sdxl.unet) == 14_400
        sd15_cn = ControlNetModel.from_config(
            ControlNetModel.load_config(CONFIGS_DIR / "controlnet-sd15")
        )
        sdxl_cn = ControlNetModel.from_config(
            ControlNetModel.load_config(CONFIGS_DIR / "controlnet-sdxl")
        )
    assert count(sd15_cn) == 361_279_120
    assert count(sdxl_cn) == 1_251_014_160


def test_full_size_sd15_single_file_layout(sd15) -> None:
    state = pipeline_to_ldm_state_dict(sd15)
    by_prefix = {
        prefix: sum(key.startswith(prefix) for key in state)
        for prefix in ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
    }
    # The key counts of the released v1-5 checkpoint (its text encoder also has position_ids).
    assert by_prefix == {
        "model.diffusion_model.": 686,
        "first_stage_model.": 248,
        "cond_stage_model.": 196,
    }
    assert sfu.CHECKPOINT_KEY_NAMES["v1"] in state
    assert sfu.CHECKPOINT_KEY_NAMES["clip"] in state
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    assert kind_from_header(shapes, "full") == CheckpointKind("sd15", False)
    # diffusers' own converter maps every key back, with the same shapes.
    assert_converts_back(sfu.convert_ldm_unet_checkpoint(state, sd15.unet.config), sd15.unet)
    assert_converts_back(sfu.convert_ldm_vae_checkpoint(state, sd15.vae.config), sd15.vae)


def test_full_size_sdxl_single_file_layout(sdxl) -> None:
    state = pipeline_to_ldm_state_dict(sdxl)
    assert sfu.CHECKPOINT_KEY_NAMES["xl_base"] in state
    assert sfu.CHECKPOINT_KEY_NAMES["clip_sdxl"] in state
    assert sfu.CHECKPOINT_KEY_NAMES["open_clip_sdxl"] in state
    assert state[SDXL_OPENCLIP_PREFIX + "transformer.resblocks.0.attn.in_proj_weight"].shape == (
        3840,
        1280,
    )
    assert sum(k.startswith("model.diffusion_model.") for k in state) == 1680
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    assert kind_from_header(shapes, "full") == CheckpointKind("sdxl", False)
    assert_converts_back(sfu.convert_ldm_unet_checkpoint(state, sdxl.unet.config), sdxl.unet)
    converted = sfu.convert_open_clip_checkpoint(
        sdxl.text_encoder_2, state, prefix=SDXL_OPENCLIP_PREFIX
    )
    assert_converts_back(converted, sdxl.text_encoder_2)


def test_full_size_controlnet_layout() -> None:
    with init_empty_weights():
        model = ControlNetModel.from_config(
            ControlNetModel.load_config(CONFIGS_DIR / "controlnet-sd15")
        )
    state = controlnet_to_ldm_state_dict(model)
    assert "control_model.input_hint_block.14.weight" in state
    assert "control_model.zero_convs.11.0.weight" in state
    assert_converts_back(sfu.convert_controlnet_checkpoint(state, model.config), model)


def assert_converts_back(converted: dict, module) -> None:
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    expected = {k: v for k, v in expected.items() if not k.endswith("position_ids")}
    got = {key: tuple(value.shape) for key, value in converted.items()}
    assert got == expected
