"""Model kinds from safetensors headers (and diffusers configs), without reading weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.engine.detect import (
    CheckpointKind,
    detect_checkpoint,
    detect_controlnet,
    detect_lora,
    read_header,
)
from backend.engine.errors import ModelLoadError
from backend.engine.tiny import TINY_CHECKPOINTS


def fake_file(path: Path, shapes: dict[str, tuple[int, ...]], metadata=None) -> Path:
    save_file({k: torch.zeros(shape) for k, shape in shapes.items()}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("name", list(TINY_CHECKPOINTS))
def test_tiny_checkpoints_from_embedded_config_and_from_keys(name, tiny_model_paths, tmp_path):
    expected = CheckpointKind(*TINY_CHECKPOINTS[name])
    assert detect_checkpoint(tiny_model_paths[name]) == expected
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(tiny_model_paths[name]), str(plain))  # header keys only, no metadata
    assert detect_checkpoint(plain) == expected


def test_header_shapes_metadata_and_a_header_without_data(tiny_model_paths, tmp_path) -> None:
    data = Path(tiny_model_paths["tiny-sdxl-inpaint"]).read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    headless = tmp_path / "header-only.safetensors"
    headless.write_bytes(data[: 8 + header_size])
    with pytest.raises(ModelLoadError):  # safetensors refuses a file shorter than its header says
        read_header(headless)
    shapes, metadata = read_header(tiny_model_paths["tiny-sdxl-inpaint"])
    assert shapes["model.diffusion_model.input_blocks.0.0.weight"][1] == 9
    assert "diffusion_layers.config" in metadata


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"cond_stage_model.model.token_embedding.weight": (4, 4)}, "Stable Diffusion 2"),
        ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4, 4)}, "Diffusion 3"),
        ({"double_blocks.0.img_attn.qkv.weight": (4, 4)}, "Flux"),
        ({"conditioner.embedders.0.model.text_projection": (4, 4)}, "refiner"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 4)}, "LoRA"),
        ({"control_model.input_hint_block.0.weight": (4, 3, 3, 3)}, "ControlNet"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3)}, "8 input channels"),
        ({"some.other.weight": (2,)}, "unknown architecture: its header holds 1 tensor;"),
    ],
)
def test_unsupported_files_are_named_clearly(keys, message, tmp_path) -> None:
    path = fake_file(tmp_path / "odd.safetensors", keys)
    with pytest.raises(ModelLoadError, match=message) as error:
        detect_checkpoint(path)
    assert "odd" in str(error.value)


def test_sd2_unet_without_text_encoder_is_refused(tmp_path) -> None:
    keys = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (
            320,
            1024,
        ),
    }
    with pytest.raises(ModelLoadError, match="2.x"):
        detect_checkpoint(fake_file(tmp_path / "v2.safetensors", keys))


def test_truncated_and_garbage_headers(tiny_model_paths, tmp_path) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(Path(tiny_model_paths["tiny"]).read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="cut.safetensors"):
        detect_checkpoint(cut)
    with pytest.raises(ModelLoadError, match="not found"):
        detect_checkpoint(tmp_path / "missing.safetensors")


def test_diffusers_folders(tmp_path) -> None:
    unet = tmp_path / "xl" / "unet"
    unet.mkdir(parents=True)
    (unet / "config.json").write_text(
        json.dumps({"in_channels": 9, "addition_embed_type": "text_time"})
    )
    assert detect_checkpoint(tmp_path / "xl") == CheckpointKind("sdxl", True)
    (unet / "config.json").write_text(json.dumps({"in_channels": 4, "cross_attention_dim": 1024}))
    with pytest.raises(ModelLoadError, match="2.x"):
        detect_checkpoint(tmp_path / "xl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="unet/config.json"):
        detect_checkpoint(tmp_path / "empty")
    cn = tmp_path / "cn"
    cn.mkdir()
    (cn / "config.json").write_text(json.dumps({"addition_embed_type": "text_time"}))
    assert detect_controlnet(cn) == "sdxl"


def test_controlnets(tiny_model_paths, tmp_path) -> None:
    assert detect_controlnet(tiny_model_paths["tiny-controlnet"]) == "sd15"
    assert detect_controlnet(tiny_model_paths["tiny-sdxl-controlnet"]) == "sdxl"
    bare = {  # ComfyUI-style files carry the original keys without "control_model."
        "input_hint_block.0.weight": (16, 3, 3, 3),
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    }
    assert detect_controlnet(fake_file(tmp_path / "bare.safetensors", bare)) == "sd15"
    with pytest.raises(ModelLoadError, match="not a ControlNet"):
        detect_controlnet(tiny_model_paths["tiny"])
    with pytest.raises(ModelLoadError, match="LoRA"):
        detect_controlnet(tiny_model_paths["tiny-lora"])


def test_loras(tiny_model_paths, tmp_path) -> None:
    assert detect_lora(tiny_model_paths["tiny-lora"]) == "sd15"
    xl = {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768)}
    assert detect_lora(fake_file(tmp_path / "xl.safetensors", xl)) == "sdxl"
    by_shape = {"unet.down.attn2.to_k.lora_A.weight": (4, 2048)}
    assert detect_lora(fake_file(tmp_path / "shape.safetensors", by_shape)) == "sdxl"
    meta = fake_file(tmp_path / "meta.safetensors", {"x": (1,)}, {"ss_base_model_version": "sd_v1"})
    assert detect_lora(meta) == "sd15"
    assert detect_lora(fake_file(tmp_path / "unknown.safetensors", {"x": (1,)})) is None
