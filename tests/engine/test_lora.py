"""LoRAs: the kohya file loads, changes the output, and unloading restores the model exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backend.engine.errors import InvalidRequest, ModelLoadError, ModelNotFound
from backend.engine.lora import loras_applied
from backend.engine.model_manager import ModelManager
from backend.engine.types import EngineConfig, LoraInput


@pytest.fixture(scope="module")
def models(tiny_models_dir: Path, tmp_path_factory) -> ModelManager:
    root = tmp_path_factory.mktemp("lora-models")
    (root / "lora").mkdir()
    (root / "lora" / "broken.safetensors").write_bytes(b"\x00" * 32)
    config = EngineConfig(models_dir=str(root), tiny_dir=str(tiny_models_dir), cache_models=2)
    return ModelManager(config)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def assert_unchanged(before: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def render(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(5)
    return pipe(
        "a green field",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=generator,
    ).images[0]


def test_tiny_lora_uses_the_kohya_layout(tiny_model_paths) -> None:
    keys = load_file(tiny_model_paths["tiny-lora"]).keys()
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_") for k in keys)
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in keys
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys


def test_lora_changes_the_output_and_unload_restores_it_bit_exactly(models) -> None:
    loaded = models.checkpoint("tiny")
    unet, text = snapshot(loaded.pipe.unet), snapshot(loaded.pipe.text_encoder)
    plain = render(loaded.pipe)
    with models.loras_applied(loaded, [LoraInput("tiny-lora", 1.0)]):
        full = render(loaded.pipe)
    with models.loras_applied(loaded, [LoraInput("tiny-lora", 0.3)]):
        partial = render(loaded.pipe)
    assert np.abs(full - plain).max() > 0.01
    assert np.abs(partial - plain).max() > 0.001
    assert np.abs(full - partial).max() > 0.001
    assert_unchanged(unet, loaded.pipe.unet)
    assert_unchanged(text, loaded.pipe.text_encoder)
    np.testing.assert_array_equal(render(loaded.pipe), plain)


def test_zero_weight_and_no_loras_leave_the_model_alone(models) -> None:
    loaded = models.checkpoint("tiny")
    plain = render(loaded.pipe)
    with models.loras_applied(loaded, [LoraInput("tiny-lora", 0.0)]):
        np.testing.assert_array_equal(render(loaded.pipe), plain)
    with models.loras_applied(loaded, []):
        np.testing.assert_array_equal(render(loaded.pipe), plain)


def test_lora_is_removed_when_the_job_fails(models) -> None:
    loaded = models.checkpoint("tiny")
    unet = snapshot(loaded.pipe.unet)
    with pytest.raises(RuntimeError, match="job failed"):
        with models.loras_applied(loaded, [LoraInput("tiny-lora", 1.0)]):
            raise RuntimeError("job failed")
    assert_unchanged(unet, loaded.pipe.unet)
    assert loaded.pipe.get_list_adapters() in ({}, {"unet": [], "text_encoder": []})


def test_wrong_family_unknown_and_broken_loras(models, tiny_model_paths) -> None:
    xl = models.checkpoint("tiny-sdxl")
    unet = snapshot(xl.pipe.unet)
    with pytest.raises(
        InvalidRequest,
        match=r"loras\[0\].name='tiny-lora'.*LoRA for SD1.5; the model 'tiny-sdxl' is SDXL",
    ):
        with models.loras_applied(xl, [LoraInput("tiny-lora")]):
            pass
    assert_unchanged(unet, xl.pipe.unet)
    loaded = models.checkpoint("tiny")
    with pytest.raises(ModelNotFound, match="no-such-lora"):
        with models.loras_applied(loaded, [LoraInput("no-such-lora")]):
            pass
    with pytest.raises(ModelLoadError, match="broken"):
        with loras_applied(
            loaded.pipe,
            [(str(Path(models.config.models_dir) / "lora" / "broken.safetensors"), "broken", 1.0)],
        ):
            pass
