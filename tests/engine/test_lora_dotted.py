"""LoRAs in the bare dotted layout (Qwen-Image-Lightning, musubi-tuner, ai-toolkit):
``[diffusion_model.|transformer.]transformer_blocks.0.attn.to_q.lora_down/lora_up/alpha``.

They are told apart from the header, loaded for Qwen-Image through the real Engine and give
the picture of the same LoRA in the diffusers/PEFT layout; other families refuse them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_engine import engine_over, txt2img

from backend.engine.families import tiny_qwen, tiny_qwen_control
from backend.engine.lora import dotted_to_peft, read_lora_file
from backend.engine.lora_formats import LoraFacts, lora_facts

#: file name -> write_lora arguments; the dotted ones hold the PEFT file's weights
DOTTED = {
    "qwen-dotted": {"layout": "dotted"},  # no prefix, no alpha: diffusers' trigger misses it
    "qwen-dotted-comfy": {"layout": "dotted", "prefix": "diffusion_model.", "alpha": 2.0},
    "qwen-dotted-transformer": {"layout": "dotted", "prefix": "transformer.", "alpha": 8.0},
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen-dotted")
    tiny_qwen.write_tiny_qwen_image(root, "base")
    tiny_qwen_control.write_lora(root / "lora" / "qwen-peft.safetensors")
    for name, options in DOTTED.items():
        tiny_qwen_control.write_lora(root / "lora" / f"{name}.safetensors", **options)
    from backend.engine.tiny import _save_atomic

    layer = "transformer_blocks.0.img_mlp.no_such_layer"  # Qwen-Image's keys, no such module
    foreign = {
        f"{layer}.lora_down.weight": torch.ones(2, 8),
        f"{layer}.lora_up.weight": torch.ones(8, 2),
    }
    _save_atomic(foreign, {}, root / "lora" / "qwen-dotted-foreign.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    return engine_over(models_dir)


def _generate(engine, loras: list[tuple[str, float]]) -> np.ndarray:
    return txt2img(engine, "tiny_qwen_image_base", "a red square", loras)


def test_the_inventory_lists_dotted_files_as_qwen_image_loras(engine) -> None:
    entries = {entry.name: entry for entry in engine.inventory().loras}
    for name in DOTTED:
        assert (entries[name].format, entries[name].family, entries[name].problem) == (
            "dotted",
            "qwen_image",
            None,
        )


def test_the_conversion_gives_the_peft_files_tensors(models_dir) -> None:
    class Pipe:
        transformer = tiny_qwen.build_transformer("base")

    peft = read_lora_file(models_dir / "lora" / "qwen-peft.safetensors")
    for name in DOTTED:
        converted = dotted_to_peft(
            read_lora_file(models_dir / "lora" / f"{name}.safetensors"), Pipe
        )
        assert set(converted) == set(peft)
        for key, value in peft.items():
            torch.testing.assert_close(converted[key], value, rtol=1e-6, atol=1e-6)


def test_a_dotted_lora_gives_the_peft_picture_and_weight_zero_changes_nothing(engine) -> None:
    plain = _generate(engine, [])
    peft = _generate(engine, [("qwen-peft", 1.0)])
    assert np.abs(plain - peft).mean() > 1.0  # the LoRA changes the picture
    for name in DOTTED:
        assert np.abs(_generate(engine, [(name, 1.0)]) - peft).max() <= 1, name
    assert np.array_equal(_generate(engine, [("qwen-dotted", 0.0)]), plain)
    assert np.array_equal(_generate(engine, []), plain)  # unloaded: the weights are as before


def test_original_names_go_to_diffusers_under_diffusion_model_and_mixed_files_unchanged() -> None:
    class Pipe:
        transformer = tiny_qwen.build_transformer("base")

    down, up = torch.ones(2, 8), torch.ones(8, 2)
    layer = "double_blocks.0.img_attn.qkv"
    bfl = {f"{layer}.lora_down.weight": down, f"{layer}.lora_up.weight": up}
    assert set(dotted_to_peft(bfl, Pipe)) == {f"diffusion_model.{key}" for key in bfl}
    comfy = {f"diffusion_model.{key}": value for key, value in bfl.items()}
    assert dotted_to_peft(comfy, Pipe) is comfy
    mixed = {
        "transformer_blocks.0.attn.to_q.lora_down.weight": down,
        "transformer_blocks.0.attn.to_q.lora_up.weight": up,
        "text_encoder.layers.0.q_proj.lora_down.weight": down,
    }
    assert dotted_to_peft(mixed, Pipe) is mixed


def test_sd_files_in_the_dotted_layout_are_refused_and_kohya_files_are_not() -> None:
    layer = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    dotted = {f"{layer}.lora_down.weight": (4, 768), f"{layer}.lora_up.weight": (320, 4)}
    facts = lora_facts(dotted, {}, "sd-dotted")
    assert (facts.format, facts.family) == ("dotted", "sd15")
    assert "bare dotted layout" in (facts.problem or "")
    kohya_layer = "lora_unet_" + layer.replace(".", "_")
    kohya = {f"{kohya_layer}.lora_down.weight": (4, 768), f"{kohya_layer}.lora_up.weight": (320, 4)}
    assert lora_facts(kohya, {}, "sd-kohya") == LoraFacts("lora", "sd15", 768, None)


def test_a_dotted_lora_naming_no_layer_of_the_model_is_a_sentence(engine) -> None:
    from backend.engine.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="qwen-dotted-foreign.*do not fit this model"):
        _generate(engine, [("qwen-dotted-foreign", 1.0)])
    plain = _generate(engine, [])  # the failed LoRA left nothing behind
    assert np.array_equal(_generate(engine, [("qwen-dotted", 0.0)]), plain)
