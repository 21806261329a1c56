"""Z-Image LoRAs in the bare dotted layout: diffusers' layer names
(``layers.0.attention.to_q.lora_down``, converted by ``lora.dotted_to_peft``) give the picture
of the same LoRA in the PEFT layout; the original fused ``layers.0.attention.qkv`` (with or
without ComfyUI's ``diffusion_model.``) is refused at submit: diffusers does not split it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_engine import engine_over, txt2img

from backend.engine.families import dit_files, tiny_dit


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from backend.engine.tiny import _save_atomic

    root = tmp_path_factory.mktemp("zimage-dotted")
    dit_files.write_comfy_layout(root, "zimage")
    dit_files.write_zimage_transformer(root / "checkpoints" / "zimage.safetensors")
    layers = dict(tiny_dit.build_zimage_transformer(0).named_modules())
    generator = torch.Generator().manual_seed(5)
    rank, alpha = 4, 2.0
    peft: dict[str, torch.Tensor] = {}
    dotted: dict[str, torch.Tensor] = {}
    for name in ("to_q", "to_k", "to_v"):
        layer = layers[f"layers.0.attention.{name}"]
        down = torch.randn(rank, layer.in_features, generator=generator)
        up = torch.randn(layer.out_features, rank, generator=generator)
        peft[f"transformer.layers.0.attention.{name}.lora_A.weight"] = down
        peft[f"transformer.layers.0.attention.{name}.lora_B.weight"] = up
        dotted[f"layers.0.attention.{name}.lora_down.weight"] = down
        dotted[f"layers.0.attention.{name}.lora_up.weight"] = up * (rank / alpha)
        dotted[f"layers.0.attention.{name}.alpha"] = torch.tensor(alpha)
    _save_atomic(peft, {}, root / "lora" / "zimage-peft.safetensors")
    _save_atomic(dotted, {}, root / "lora" / "zimage-dotted.safetensors")
    width = layers["layers.0.attention.to_q"].in_features
    fused = {
        "layers.0.attention.qkv.lora_down.weight": torch.randn(rank, width, generator=generator),
        "layers.0.attention.qkv.lora_up.weight": torch.randn(3 * width, rank, generator=generator),
    }
    _save_atomic(fused, {}, root / "lora" / "zimage-qkv.safetensors")
    comfy = {f"diffusion_model.{key}": value for key, value in fused.items()}
    _save_atomic(comfy, {}, root / "lora" / "zimage-qkv-comfy.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    return engine_over(models_dir)


def _generate(engine, loras: list[tuple[str, float]]) -> np.ndarray:
    return txt2img(engine, "zimage", "a red cat", loras)


def test_dotted_zimage_loras_in_diffusers_names_are_listed_and_fused_ones_refused(engine) -> None:
    entries = {entry.name: entry for entry in engine.inventory().loras}
    entry = entries["zimage-dotted"]
    assert (entry.format, entry.family, entry.problem) == ("dotted", "zimage", None)
    for name in ("zimage-qkv", "zimage-qkv-comfy"):  # diffusers does not split these
        assert (entries[name].format, entries[name].family) == ("dotted", "zimage")
        assert "bare dotted layout" in (entries[name].problem or "")


def test_a_dotted_zimage_lora_gives_the_peft_picture(engine) -> None:
    plain = _generate(engine, [])
    peft = _generate(engine, [("zimage-peft", 1.0)])
    assert np.abs(plain - peft).mean() > 1.0
    assert np.abs(_generate(engine, [("zimage-dotted", 1.0)]) - peft).max() <= 1
    assert np.array_equal(_generate(engine, [("zimage-dotted", 0.0)]), plain)
