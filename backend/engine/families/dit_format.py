"""Flux.1 and Z-Image transformers in the key layouts their single files ship in.

Flux.1 files (BFL's ``flux1-dev.safetensors``, ComfyUI's ``*-fp8.safetensors``, city96's GGUF)
hold ``double_blocks.*`` / ``single_blocks.*`` with fused q/k/v (optionally under
``model.diffusion_model.``); Z-Image files hold ``layers.*`` / ``noise_refiner.*`` /
``context_refiner.*`` with a fused ``attention.qkv``. ``flux_to_diffusers`` converts the Flux
layout for any width (diffusers' own converter assumes the 12B model's 3072 channels), and works
on GGUF-quantised tensors (rows are split, never the quantised blocks). The ``*_to_original``
functions go the other way, to write the tiny models as users' files are written; diffusers'
loader reads them back (its converter is the reference of the inverse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PREFIX = "model.diffusion_model."


def strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """The state without ComfyUI's ``model.diffusion_model.`` prefix."""
    return {(k[len(PREFIX) :] if k.startswith(PREFIX) else k): v for k, v in state.items()}


def _swap_halves(weight: Any) -> Any:
    """BFL's final adaLN is (shift, scale); diffusers' (scale, shift). Its own inverse."""
    import torch

    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _block_count(state: dict[str, Any], prefix: str) -> int:
    indices = {int(k.split(".")[1]) for k in state if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


_EMBEDDERS = (
    ("time_in.", "time_text_embed.timestep_embedder."),
    ("vector_in.", "time_text_embed.text_embedder."),
    ("guidance_in.", "time_text_embed.guidance_embedder."),
)
_MLP_EMBEDDER = (("in_layer.", "linear_1."), ("out_layer.", "linear_2."))
_DOUBLE = (
    ("img_mod.lin.", "norm1.linear."),
    ("txt_mod.lin.", "norm1_context.linear."),
    ("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
    ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
    ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
    ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
    ("img_mlp.0.", "ff.net.0.proj."),
    ("img_mlp.2.", "ff.net.2."),
    ("txt_mlp.0.", "ff_context.net.0.proj."),
    ("txt_mlp.2.", "ff_context.net.2."),
    ("img_attn.proj.", "attn.to_out.0."),
    ("txt_attn.proj.", "attn.to_add_out."),
)
_SINGLE = (
    ("modulation.lin.", "norm.linear."),
    ("norm.query_norm.scale", "attn.norm_q.weight"),
    ("norm.key_norm.scale", "attn.norm_k.weight"),
    ("linear2.", "proj_out."),
)


def flux_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A Flux.1 transformer state in BFL layout -> diffusers ``FluxTransformer2DModel`` keys."""
    import torch

    source = strip_prefix(state)
    out: dict[str, Any] = {}
    inner = int(source["img_in.weight"].shape[0])
    # 1. Embedders, input and output projections.
    for old, new in _EMBEDDERS:
        for part_old, part_new in _MLP_EMBEDDER:
            for kind in ("weight", "bias"):
                key = f"{old}{part_old}{kind}"
                if key in source:
                    out[f"{new}{part_new}{kind}"] = source[key]
    for kind in ("weight", "bias"):
        out[f"context_embedder.{kind}"] = source[f"txt_in.{kind}"]
        out[f"x_embedder.{kind}"] = source[f"img_in.{kind}"]
        out[f"proj_out.{kind}"] = source[f"final_layer.linear.{kind}"]
        out[f"norm_out.linear.{kind}"] = _swap_halves(
            source[f"final_layer.adaLN_modulation.1.{kind}"]
        )
    # 2. Double-stream blocks: renames, and the fused q/k/v of both streams.
    for index in range(_block_count(source, "double_blocks.")):
        old, new = f"double_blocks.{index}.", f"transformer_blocks.{index}."
        for rest_old, rest_new in _DOUBLE:
            for key in [k for k in source if k.startswith(old + rest_old)]:
                out[new + rest_new + key[len(old + rest_old) :]] = source[key]
        for stream, names in (("img", ("to_q", "to_k", "to_v")), ("txt", _ADDED)):
            for kind in ("weight", "bias"):
                parts = torch.chunk(source[f"{old}{stream}_attn.qkv.{kind}"], 3, dim=0)
                for name, part in zip(names, parts, strict=True):
                    out[f"{new}attn.{name}.{kind}"] = part
    # 3. Single-stream blocks: q, k, v and the MLP input share linear1.
    for index in range(_block_count(source, "single_blocks.")):
        old, new = f"single_blocks.{index}.", f"single_transformer_blocks.{index}."
        for rest_old, rest_new in _SINGLE:
            for key in [k for k in source if k.startswith(old + rest_old)]:
                out[new + rest_new + key[len(old + rest_old) :]] = source[key]
        for kind in ("weight", "bias"):
            fused = source[f"{old}linear1.{kind}"]
            sizes = (inner, inner, inner, int(fused.shape[0]) - 3 * inner)
            parts = torch.split(fused, sizes, dim=0)
            for name, part in zip(("to_q", "to_k", "to_v", "proj_mlp"), parts, strict=True):
                out[f"{new}{'' if name == 'proj_mlp' else 'attn.'}{name}.{kind}"] = part
    return out


_ADDED = ("add_q_proj", "add_k_proj", "add_v_proj")


def flux_to_original(transformer: Any) -> dict[str, torch.Tensor]:
    """A diffusers FluxTransformer2DModel (or FluxControlNetModel-free transformer) in BFL
    layout, as ``flux1-dev.safetensors`` holds it."""
    import torch

    state = transformer.state_dict()
    out: dict[str, torch.Tensor] = {}
    for old, new in _EMBEDDERS:
        for part_old, part_new in _MLP_EMBEDDER:
            for kind in ("weight", "bias"):
                key = f"{new}{part_new}{kind}"
                if key in state:
                    out[f"{old}{part_old}{kind}"] = state[key]
    for kind in ("weight", "bias"):
        out[f"txt_in.{kind}"] = state[f"context_embedder.{kind}"]
        out[f"img_in.{kind}"] = state[f"x_embedder.{kind}"]
        out[f"final_layer.linear.{kind}"] = state[f"proj_out.{kind}"]
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(
            state[f"norm_out.linear.{kind}"]
        )
    for index in range(int(transformer.config.num_layers)):
        old, new = f"double_blocks.{index}.", f"transformer_blocks.{index}."
        for rest_old, rest_new in _DOUBLE:
            for key in [k for k in state if k.startswith(new + rest_new)]:
                out[old + rest_old + key[len(new + rest_new) :]] = state[key]
        for stream, names in (("img", ("to_q", "to_k", "to_v")), ("txt", _ADDED)):
            for kind in ("weight", "bias"):
                parts = [state[f"{new}attn.{name}.{kind}"] for name in names]
                out[f"{old}{stream}_attn.qkv.{kind}"] = torch.cat(parts, 0)
    for index in range(int(transformer.config.num_single_layers)):
        old, new = f"single_blocks.{index}.", f"single_transformer_blocks.{index}."
        for rest_old, rest_new in _SINGLE:
            for key in [k for k in state if k.startswith(new + rest_new)]:
                out[old + rest_old + key[len(new + rest_new) :]] = state[key]
        for kind in ("weight", "bias"):
            names = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
            out[f"{old}linear1.{kind}"] = torch.cat([state[f"{new}{n}.{kind}"] for n in names], 0)
    return {key: value.detach().contiguous() for key, value in out.items()}


_ZIMAGE_RENAMES = (
    ("all_final_layer.2-1.", "final_layer."),
    ("all_x_embedder.2-1.", "x_embedder."),
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_k.", ".attention.k_norm."),
    (".attention.norm_q.", ".attention.q_norm."),
)


def zimage_to_original(transformer: Any) -> dict[str, torch.Tensor]:
    """A diffusers ZImageTransformer2DModel in the original layout (fused attention.qkv), as
    ``z_image_turbo_bf16.safetensors`` holds it."""
    import torch

    state = dict(transformer.state_dict())
    out: dict[str, torch.Tensor] = {}
    for key in list(state):
        if key.endswith(".attention.to_q.weight"):
            base = key[: -len("to_q.weight")]
            parts = [state.pop(base + f"to_{name}.weight") for name in ("q", "k", "v")]
            out[base + "qkv.weight"] = torch.cat(parts, 0)
    for key, value in state.items():
        new = key
        for old, replacement in _ZIMAGE_RENAMES:
            new = new.replace(old, replacement)
        out[new] = value
    return {key: value.detach().contiguous() for key, value in out.items()}


def flux_vae_to_original(vae: Any) -> dict[str, torch.Tensor]:
    """The Flux VAE in BFL's ``ae.safetensors`` layout (the LDM layout without a prefix)."""
    from backend.engine.checkpoint_format import VAE_PREFIX, vae_to_ldm

    state = vae_to_ldm(vae)
    return {k[len(VAE_PREFIX) :]: v.contiguous() for k, v in state.items()}
