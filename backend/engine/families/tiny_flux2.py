"""Tiny FLUX.2 klein models built in code, and the writer of a complete tiny set as users keep
the real files (tests, CI, demos).

They keep the real layouts at toy sizes: the FLUX.2 VAE's 32 latent channels (2x2-patchified to
128 transformer channels, with its batch-norm statistics), the klein transformer (double and
single stream blocks, shared modulations, no guidance embedding) fed by three stacked hidden
states of a Qwen3 text encoder (``joint_attention_dim`` = 3 x the encoder's width). A 64 px,
2-step generation runs on a CPU in well under a second. Weights are seeded.

``write_tiny_flux2_klein(models_dir)`` writes the ComfyUI layout: the transformer alone in
``checkpoints/`` (where the inventory lists checkpoints; BFL keys under ``model.diffusion_model.``, safetensors or GGUF Q8_0), the
Qwen3 encoder in ``text_encoders/`` (the tiny one from ``dit_files.write_qwen``) and the VAE in
``vae/`` (BFL's original layout plus ``bn.*``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from backend.engine.families.tiny_text import QWEN_HIDDEN

#: the checkpoint name ``write_tiny_flux2_klein`` returns (the inventory's name for it)
TINY_NAME = "tiny_flux2_klein"
TINY_NATIVE = 64

_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "out_channels": None,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 3 * QWEN_HIDDEN,
    "timestep_guidance_channels": 32,
    "mlp_ratio": 3.0,
    "axes_dims_rope": [4, 4, 4, 4],
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": False,
}

_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 32, 32],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 32,
    "norm_num_groups": 8,
    "sample_size": 64,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
    "batch_norm_eps": 1e-4,
    "batch_norm_momentum": 0.1,
    "patch_size": [2, 2],
}

#: klein's scheduler (scheduler/scheduler_config.json of the Hub repos): flow matching whose
#: shift the pipeline computes per resolution and step count (``mu``)
SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "time_shift_type": "exponential",
}


def transformer_config() -> dict[str, Any]:
    return copy.deepcopy(_TRANSFORMER)


def vae_config() -> dict[str, Any]:
    return copy.deepcopy(_VAE)


def _seeded(seed: int, index: int) -> None:
    import torch

    torch.manual_seed(seed * 1000 + index)


def build_transformer(seed: int = 0) -> Any:
    """The tiny transformer, its projections drawn with std 1.5/sqrt(fan-in): at diffusers'
    default init the reference images and prompts of a 2-step tiny run move the decoded
    picture by well under one 8-bit level, too little to tell a reference from none."""
    import torch
    from diffusers import Flux2Transformer2DModel

    _seeded(seed, 20)
    model = Flux2Transformer2DModel(**transformer_config()).eval()
    generator = torch.Generator().manual_seed(seed * 1000 + 23)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                std = 1.5 / parameter.shape[1] ** 0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


def build_vae(seed: int = 0) -> Any:
    """A tiny AutoencoderKLFlux2 with seeded, non-trivial batch-norm statistics."""
    import torch
    from diffusers import AutoencoderKLFlux2

    _seeded(seed, 21)
    vae = AutoencoderKLFlux2(**vae_config()).eval()
    channels = vae.bn.running_mean.shape[0]
    generator = torch.Generator().manual_seed(seed * 1000 + 22)
    vae.bn.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
    vae.bn.running_var.copy_(1.0 + torch.rand(channels, generator=generator))
    return vae


def build_pipeline(seed: int = 0, *, distilled: bool = True) -> Any:
    """A seeded fp32 tiny Flux2KleinPipeline (``distilled``: its ``is_distilled``)."""
    import diffusers

    from backend.engine.families.tiny_text import build_qwen_encoder, build_qwen_tokenizer

    pipe = diffusers.Flux2KleinPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        vae=build_vae(seed),
        text_encoder=build_qwen_encoder(seed * 1000 + 3),
        tokenizer=build_qwen_tokenizer(),
        transformer=build_transformer(seed),
        is_distilled=distilled,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- the original (BFL) layouts ---------------------------------------------------------------

_RENAMES = (  # diffusers -> BFL, the inverse of diffusers' convert_flux2_transformer_...
    ("x_embedder.", "img_in."),
    ("context_embedder.", "txt_in."),
    ("time_guidance_embed.timestep_embedder.linear_1.", "time_in.in_layer."),
    ("time_guidance_embed.timestep_embedder.linear_2.", "time_in.out_layer."),
    ("double_stream_modulation_img.linear.", "double_stream_modulation_img.lin."),
    ("double_stream_modulation_txt.linear.", "double_stream_modulation_txt.lin."),
    ("single_stream_modulation.linear.", "single_stream_modulation.lin."),
    ("proj_out.", "final_layer.linear."),
)
_DOUBLE = (
    ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
    ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
    ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
    ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
    ("attn.to_out.0.", "img_attn.proj."),
    ("attn.to_add_out.", "txt_attn.proj."),
    ("ff.linear_in.", "img_mlp.0."),
    ("ff.linear_out.", "img_mlp.2."),
    ("ff_context.linear_in.", "txt_mlp.0."),
    ("ff_context.linear_out.", "txt_mlp.2."),
)
_SINGLE = (
    ("attn.to_qkv_mlp_proj.", "linear1."),
    ("attn.to_out.", "linear2."),
    ("attn.norm_q.weight", "norm.query_norm.scale"),
    ("attn.norm_k.weight", "norm.key_norm.scale"),
)
PREFIX = "model.diffusion_model."


def transformer_to_original(model: Any) -> dict[str, Any]:
    """A diffusers Flux2Transformer2DModel in BFL's layout (fused img/txt ``qkv``, ``linear1``,
    the final adaLN as (shift, scale)), as ``flux-2-klein-4b.safetensors`` holds it."""
    import torch

    state = dict(model.state_dict())
    out: dict[str, Any] = {}
    for index in range(int(model.config.num_layers)):
        new = f"transformer_blocks.{index}."
        old = f"double_blocks.{index}."
        for stream, names in (
            ("img", ("to_q", "to_k", "to_v")),
            ("txt", ("add_q_proj", "add_k_proj", "add_v_proj")),
        ):
            parts = [state.pop(f"{new}attn.{name}.weight") for name in names]
            out[f"{old}{stream}_attn.qkv.weight"] = torch.cat(parts, 0)
        for key in [k for k in state if k.startswith(new)]:
            rest = key[len(new) :]
            for ours, theirs in _DOUBLE:
                if rest.startswith(ours):
                    out[old + theirs + rest[len(ours) :]] = state.pop(key)
                    break
    for index in range(int(model.config.num_single_layers)):
        new, old = f"single_transformer_blocks.{index}.", f"single_blocks.{index}."
        for key in [k for k in state if k.startswith(new)]:
            rest = key[len(new) :]
            for ours, theirs in _SINGLE:
                if rest.startswith(ours):
                    out[old + theirs + rest[len(ours) :]] = state.pop(key)
                    break
    scale, shift = state.pop("norm_out.linear.weight").chunk(2, dim=0)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale], 0)
    for key, value in state.items():
        new_key = key
        for ours, theirs in _RENAMES:
            if new_key.startswith(ours):
                new_key = theirs + new_key[len(ours) :]
        out[new_key] = value
    return {key: value.detach().contiguous() for key, value in out.items()}


def vae_to_original(vae: Any) -> dict[str, Any]:
    """The FLUX.2 VAE in the original layout: the LDM autoencoder keys without a prefix, the
    1x1 ``quant_conv``/``post_quant_conv`` and the latent batch norm ``bn.*``."""
    from backend.engine.checkpoint_format import VAE_PREFIX, vae_to_ldm

    full = vae.state_dict()
    plain = {k: v for k, v in full.items() if not k.startswith("bn.")}
    ldm = vae_to_ldm(SimpleNamespace(state_dict=lambda: plain, config=vae.config))
    out = {k[len(VAE_PREFIX) :]: v for k, v in ldm.items()}
    for name in ("running_mean", "running_var"):
        out[f"bn.{name}"] = full[f"bn.{name}"]
    return {key: value.detach().contiguous() for key, value in out.items()}


def write_tiny_lora(target: str | Path, *, seed: int = 5, rank: int = 4) -> Path:
    """A tiny klein LoRA in the diffusers/PEFT layout (``transformer.*.lora_A/B``) on the
    attention of the double block and the fused projection of the single block, seeded and
    strong enough to change a 2-step picture."""
    import torch

    from backend.engine.families import dit_files

    config = transformer_config()
    inner = config["attention_head_dim"] * config["num_attention_heads"]
    fused = 3 * inner + 2 * int(inner * config["mlp_ratio"])
    generator = torch.Generator().manual_seed(seed)
    layers = {
        f"transformer.transformer_blocks.{i}.attn.{name}": (inner, inner)
        for i in range(config["num_layers"])
        for name in ("to_q", "to_k", "to_v")
    }
    for index in range(config["num_single_layers"]):
        layers[f"transformer.single_transformer_blocks.{index}.attn.to_qkv_mlp_proj"] = (
            fused,
            inner,
        )
    state: dict[str, Any] = {}
    for prefix, (out, width) in layers.items():
        state[prefix + ".lora_A.weight"] = torch.randn(rank, width, generator=generator) * 0.5
        state[prefix + ".lora_B.weight"] = torch.randn(out, rank, generator=generator) * 0.5
    return dit_files._save(state, {}, target)


def write_tiny_flux2_klein(models_dir: str | Path, *, seed: int = 0, gguf: bool = False) -> str:
    """A complete tiny FLUX.2 klein set in ``models_dir`` (ComfyUI layout; see the module doc);
    returns the checkpoint name the inventory lists (``tiny_flux2_klein``). ``gguf``: the
    transformer as a Q8_0 GGUF file instead of safetensors."""
    from backend.engine.families import dit_files

    root = Path(models_dir)
    config = dict(transformer_config(), _dl_native_size=TINY_NATIVE)
    state = transformer_to_original(build_transformer(seed))
    folder = root / "checkpoints"
    if gguf:
        dit_files.write_gguf(state, folder / f"{TINY_NAME}.gguf", config)
    else:
        state = {PREFIX + k: v for k, v in state.items()}
        dit_files._save(
            state, {dit_files.CONFIG_KEY: json.dumps(config)}, folder / f"{TINY_NAME}.safetensors"
        )
    dit_files.write_qwen(root / "text_encoders" / "tiny_qwen3_klein.safetensors", seed=seed)
    vae = vae_to_original(build_vae(seed))
    metadata = {dit_files.CONFIG_KEY: json.dumps(vae_config())}
    dit_files._save(vae, metadata, root / "vae" / "tiny_flux2_vae.safetensors")
    return TINY_NAME
