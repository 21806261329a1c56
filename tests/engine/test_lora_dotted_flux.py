"""Flux.1 LoRAs in the bare dotted layout: diffusers' layer names
(``transformer_blocks.0.attn.to_q.lora_down``, converted by ``lora.dotted_to_peft``) give the
picture of the same LoRA in the PEFT layout; BFL's names (``double_blocks.0.img_attn.qkv``)
load with or without ComfyUI's ``diffusion_model.`` prefix (diffusers' converter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_engine import engine_over, txt2img

from backend.engine.families import dit_files, tiny_dit
from backend.engine.lora import read_lora_file


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from backend.engine.tiny import _save_atomic

    root = tmp_path_factory.mktemp("flux-dotted")
    dit_files.write_comfy_layout(root, "flux1")
    dit_files.write_flux_transformer(root / "checkpoints" / "flux-dev.safetensors", "dev")
    peft = dit_files.write_flux_lora(root / "lora" / "flux-peft.safetensors")
    rank, alpha = 4, 2.0  # the dotted file's up matrices carry rank / alpha: the same LoRA
    dotted: dict[str, torch.Tensor] = {}
    for key, value in read_lora_file(peft).items():
        layer, kind = key.removeprefix("transformer.").rsplit(".lora_", 1)
        if kind.startswith("A"):
            dotted[f"{layer}.lora_down.weight"] = value
            dotted[f"{layer}.alpha"] = torch.tensor(alpha)
        else:
            dotted[f"{layer}.lora_up.weight"] = value * (rank / alpha)
    _save_atomic(dotted, {}, root / "lora" / "flux-dotted.safetensors")
    inner = tiny_dit.flux_transformer_config("dev")["attention_head_dim"] * 2
    generator = torch.Generator().manual_seed(3)
    down = torch.randn(rank, inner, generator=generator) * 2
    up = torch.randn(3 * inner, rank, generator=generator) * 2
    layer = "double_blocks.0.img_attn.qkv"
    bfl = {f"{layer}.lora_down.weight": down, f"{layer}.lora_up.weight": up}
    _save_atomic(bfl, {}, root / "lora" / "flux-bfl-dotted.safetensors")
    comfy = {f"diffusion_model.{key}": value for key, value in bfl.items()}
    _save_atomic(comfy, {}, root / "lora" / "flux-bfl-comfy.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    return engine_over(models_dir)


def _generate(engine, loras: list[tuple[str, float]]) -> np.ndarray:
    return txt2img(engine, "flux-dev", "a red cat", loras)


def test_dotted_flux_loras_are_listed_as_flux_loras(engine) -> None:
    entries = {entry.name: entry for entry in engine.inventory().loras}
    for name in ("flux-dotted", "flux-bfl-dotted", "flux-bfl-comfy"):
        assert (entries[name].format, entries[name].family, entries[name].problem) == (
            "dotted",
            "flux1",
            None,
        )


def test_dotted_flux_loras_load_and_weight_zero_changes_nothing(engine) -> None:
    plain = _generate(engine, [])
    peft = _generate(engine, [("flux-peft", 1.0)])
    assert np.abs(plain - peft).mean() > 1.0
    assert np.abs(_generate(engine, [("flux-dotted", 1.0)]) - peft).max() <= 1
    bfl = _generate(engine, [("flux-bfl-dotted", 1.0)])
    assert np.abs(bfl - plain).mean() > 0.5  # BFL names reach the fused qkv projection
    assert np.abs(_generate(engine, [("flux-bfl-comfy", 1.0)]) - bfl).max() <= 1
    assert np.array_equal(_generate(engine, [("flux-dotted", 0.0)]), plain)
