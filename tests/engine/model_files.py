"""Model files for the header tests: fake ones (right names and shapes, zero data) and real
tiny ones (LoCon, LoHa, LoKr, diffusers-format LoRAs, a VAE, a checkpoint without its VAE)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from backend.engine.clip_layout import classic_path
from backend.engine.lora import kohya_lora_state_dict


def fake_file(path: Path, shapes: dict[str, tuple[int, ...]], metadata=None) -> Path:
    """A .safetensors whose header has ``shapes`` (zero tensors, tiny on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(v) for k, v in shapes.items()}, str(path), metadata=metadata)
    return path


def full_size_sd15_lora() -> dict[str, tuple[int, ...]]:
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    return {f"{base}.lora_down.weight": (4, 768), f"{base}.lora_up.weight": (320, 4)}


def _modules(pipe, types):
    for prefix, model in (("lora_unet_", pipe.unet), ("lora_te_", pipe.text_encoder)):
        for path, module in model.named_modules():
            if isinstance(module, types):
                yield prefix + classic_path(model, path).replace(".", "_"), path, module


def locon_state(pipe, seed: int = 3) -> dict[str, torch.Tensor]:
    """kohya LoCon: the attention LoRA plus 3x3 down / 1x1 up pairs on every resnet conv."""
    generator = torch.Generator().manual_seed(seed)
    state = kohya_lora_state_dict(pipe, seed=seed)
    for name, path, conv in _modules(pipe, torch.nn.Conv2d):
        if "resnets" not in path or not path.endswith(("conv1", "conv2")):
            continue
        down = torch.randn(4, conv.in_channels, 3, 3, generator=generator) * 0.3
        state[f"{name}.lora_down.weight"] = down
        state[f"{name}.lora_up.weight"] = torch.randn(conv.out_channels, 4, 1, 1) * 0.3
        state[f"{name}.alpha"] = torch.tensor(2.0)
    return state


def lycoris_state(pipe, kind: str, seed: int = 4) -> dict[str, torch.Tensor]:
    """LyCORIS LoHa (``hada_*``) or LoKr (``lokr_*``) over the tiny model's attention."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, path, linear in _modules(pipe, torch.nn.Linear):
        if not path.endswith(("to_q", "to_k", "to_v", "q_proj", "k_proj", "v_proj")):
            continue
        rows, cols = linear.out_features, linear.in_features
        if kind == "loha":
            for side in ("1", "2"):
                state[f"{name}.hada_w{side}_a"] = torch.randn(rows, 4, generator=generator) * 0.4
                state[f"{name}.hada_w{side}_b"] = torch.randn(4, cols, generator=generator) * 0.4
        else:
            # w1 full (4x4), w2 decomposed with rank 2 (the common LyCORIS layout)
            state[f"{name}.lokr_w1"] = torch.randn(4, 4, generator=generator) * 0.5
            state[f"{name}.lokr_w2_a"] = torch.randn(rows // 4, 2, generator=generator) * 0.5
            state[f"{name}.lokr_w2_b"] = torch.randn(2, cols // 4, generator=generator) * 0.5
        state[f"{name}.alpha"] = torch.tensor(4.0)
    return state


def diffusers_state(pipe, seed: int = 5) -> dict[str, torch.Tensor]:
    """PEFT/diffusers layout: ``unet.<module>.lora_A.weight`` / ``lora_B`` (and text_encoder)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for prefix, model, targets in (
        ("unet.", pipe.unet, ("to_q", "to_k", "to_v", "to_out.0")),
        ("text_encoder.", pipe.text_encoder, ("q_proj", "k_proj", "v_proj", "out_proj")),
    ):
        for path, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and path.endswith(targets):
                a = torch.randn(4, module.in_features, generator=generator) * 0.5
                b = torch.randn(module.out_features, 4, generator=generator) * 0.5
                name = prefix + classic_path(model, path)  # as files name them
                state[f"{name}.lora_A.weight"] = a
                state[f"{name}.lora_B.weight"] = b
    return state


def save(state: dict[str, torch.Tensor], path: Path, metadata=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state.items()}
    save_file(tensors, str(path), metadata=metadata)
    return path


def strip_vae(source: str | Path, target: Path) -> Path:
    """A copy of a single-file checkpoint without its ``first_stage_model.*`` weights (what
    "pruned, no VAE" downloads are)."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata() or {}
    state = {k: v for k, v in load_file(str(source)).items() if "first_stage_model." not in k}
    return save(state, target, metadata)


def merge_loha(pipe, state: dict[str, torch.Tensor], weight: float = 1.0) -> None:
    """Add a LoHa's weight differences to ``pipe`` in place, the way LyCORIS defines them:
    (w1_a @ w1_b) * (w2_a @ w2_b) * alpha / rank (the reference the adapter must match)."""
    layers = {name: path for name, path, _ in _modules(pipe, (torch.nn.Linear, torch.nn.Conv2d))}
    with torch.no_grad():
        for key in [k for k in state if k.endswith(".hada_w1_a")]:
            name = key[: -len(".hada_w1_a")]
            model = pipe.unet if name.startswith("lora_unet_") else pipe.text_encoder
            module = model.get_submodule(layers[name])
            w1 = state[f"{name}.hada_w1_a"] @ state[f"{name}.hada_w1_b"]
            w2 = state[f"{name}.hada_w2_a"] @ state[f"{name}.hada_w2_b"]
            rank = state[f"{name}.hada_w1_b"].shape[0]
            scale = float(state[f"{name}.alpha"]) / rank * weight
            module.weight += (w1 * w2 * scale).reshape(module.weight.shape)


def merge_lokr(pipe, state: dict[str, torch.Tensor], weight: float = 1.0) -> None:
    """Add a LoKr's weight differences to ``pipe`` in place, as LyCORIS defines them:
    kron(w1, w2_a @ w2_b) * alpha / rank."""
    layers = {name: path for name, path, _ in _modules(pipe, (torch.nn.Linear,))}
    with torch.no_grad():
        for key in [k for k in state if k.endswith(".lokr_w1")]:
            name = key[: -len(".lokr_w1")]
            model = pipe.unet if name.startswith("lora_unet_") else pipe.text_encoder
            module = model.get_submodule(layers[name])
            w2 = state[f"{name}.lokr_w2_a"] @ state[f"{name}.lokr_w2_b"]
            scale = float(state[f"{name}.alpha"]) / state[f"{name}.lokr_w2_b"].shape[0] * weight
            module.weight += torch.kron(state[key], w2) * scale
