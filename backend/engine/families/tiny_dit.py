"""Tiny Flux.1 and Z-Image models built in code (tests, CI, demos).

They keep the real layouts at toy sizes: the Flux VAE's 16 latent channels and scale factor 8
(no quant convs, shift factor), Flux's 2x2 packed latents (64 transformer input channels; 384
for FLUX.1 Fill, whose image input also carries the masked image and the packed mask),
double and single stream blocks, the guidance embedding of dev (none in schnell), CLIP-L and
T5 text encoders; Z-Image's single-stream transformer with refiner layers fed by a Qwen3
encoder. A 64 px, 2-step generation runs on a CPU in well under a second. Weights are seeded.
"""

from __future__ import annotations

import copy
from typing import Any

from backend.engine.families.tiny_text import (
    QWEN_HIDDEN,
    T5_HIDDEN,
    build_qwen_encoder,
    build_qwen_tokenizer,
    build_t5_encoder,
    build_t5_tokenizer,
)

CLIP_HIDDEN = 32
FLUX_VARIANTS = ("dev", "schnell", "fill")

_FLUX: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": None,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": T5_HIDDEN,
    "pooled_projection_dim": CLIP_HIDDEN,
    "guidance_embeds": True,
    "axes_dims_rope": [4, 6, 6],
}

_ZIMAGE: dict[str, Any] = {
    "all_patch_size": [2],
    "all_f_patch_size": [1],
    "in_channels": 16,
    "dim": 32,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": QWEN_HIDDEN,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [4, 6, 6],
    "axes_lens": [1024, 64, 64],
}

#: The Flux VAE (ae.safetensors) at toy width; Z-Image uses the same VAE.
_FLUX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "block_out_channels": [16, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,
    "act_fn": "silu",
    "mid_block_add_attention": True,
}

_CLIP: dict[str, Any] = {
    "hidden_size": CLIP_HIDDEN,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
    "projection_dim": CLIP_HIDDEN,
}

_FLOW_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


def check_variant(variant: str) -> None:
    if variant not in FLUX_VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {', '.join(FLUX_VARIANTS)}")


def flux_transformer_config(variant: str = "dev") -> dict[str, Any]:
    """dev: guidance embedding; schnell: none; fill: dev with a 384-channel image input
    (64 noisy + 64 masked-image + 256 packed-mask channels) and 64 output channels."""
    check_variant(variant)
    config = copy.deepcopy(_FLUX)
    config["guidance_embeds"] = variant != "schnell"
    if variant == "fill":
        config.update(in_channels=384, out_channels=64)
    return config


def zimage_transformer_config() -> dict[str, Any]:
    return copy.deepcopy(_ZIMAGE)


def flux_vae_config() -> dict[str, Any]:
    return copy.deepcopy(_FLUX_VAE)


def clip_config() -> dict[str, Any]:
    return copy.deepcopy(_CLIP)


def flow_scheduler_config(family: str) -> dict[str, Any]:
    """Flux schedules with resolution-dependent shift; Z-Image Turbo with a fixed shift 3."""
    config = copy.deepcopy(_FLOW_SCHEDULER)
    if family == "zimage":
        config.update(use_dynamic_shifting=False, shift=3.0)
    return config


def flux_controlnet_config(union: bool = False) -> dict[str, Any]:
    """A Flux ControlNet matching the tiny transformer (``union``: with control modes)."""
    config = flux_transformer_config("dev")
    config.pop("out_channels")
    config.update(num_layers=1, num_single_layers=0)
    if union:
        config["num_mode"] = 10
    return config


def zimage_controlnet_config() -> dict[str, Any]:
    """A Z-Image ControlNet (2.x "control_layers" kind) matching the tiny transformer."""
    base = zimage_transformer_config()
    return {
        "control_layers_places": [0, 1],
        "control_refiner_layers_places": [0],
        "control_in_dim": 16,
        "add_control_noise_refiner": "control_layers",
        "all_patch_size": base["all_patch_size"],
        "all_f_patch_size": base["all_f_patch_size"],
        "dim": base["dim"],
        "n_refiner_layers": base["n_refiner_layers"],
        "n_heads": base["n_heads"],
        "n_kv_heads": base["n_kv_heads"],
        "norm_eps": base["norm_eps"],
        "qk_norm": base["qk_norm"],
    }


def _seeded(seed: int, index: int) -> None:
    import torch

    torch.manual_seed(seed * 1000 + index)


def build_flux_vae(seed: int = 0) -> Any:
    from diffusers import AutoencoderKL

    _seeded(seed, 1)
    return AutoencoderKL(**flux_vae_config()).eval()


def build_clip_encoder(seed: int = 0) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    _seeded(seed, 2)
    return CLIPTextModel(CLIPTextConfig(**clip_config())).eval()


def build_flux_transformer(variant: str = "dev", seed: int = 0) -> Any:
    from diffusers import FluxTransformer2DModel

    _seeded(seed, 0)
    return FluxTransformer2DModel(**flux_transformer_config(variant)).eval()


def build_zimage_transformer(seed: int = 0) -> Any:
    from diffusers import ZImageTransformer2DModel

    _seeded(seed, 0)
    return ZImageTransformer2DModel(**zimage_transformer_config()).eval()


def _wake(model: Any, names: tuple[str, ...], seed: int, std: float = 0.2) -> None:
    """Seeded random weights for a fresh ControlNet's zero-initialised outputs, so the control
    image visibly steers the tiny model (see tiny.py's _wake_controlnet)."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1000 + 11)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if any(part in name for part in names):
                noise = torch.randn(parameter.shape, generator=generator) * std
                parameter.copy_(noise.to(parameter.dtype))


def build_flux_controlnet(union: bool = False, seed: int = 0) -> Any:
    from diffusers import FluxControlNetModel

    _seeded(seed, 10)
    model = FluxControlNetModel(**flux_controlnet_config(union)).eval()
    _wake(model, ("controlnet_blocks", "controlnet_x_embedder"), seed)
    return model


def build_zimage_controlnet(seed: int = 0) -> Any:
    from diffusers import ZImageControlNetModel

    _seeded(seed, 10)
    model = ZImageControlNetModel(**zimage_controlnet_config()).eval()
    _wake(model, ("after_proj", "before_proj"), seed)
    return model


def build_flux_pipeline(variant: str = "dev", seed: int = 0) -> Any:
    """A seeded fp32 tiny FluxPipeline (FluxFillPipeline for ``variant="fill"``)."""
    import diffusers

    from backend.engine.tokenizer import load_clip_tokenizer

    cls = diffusers.FluxFillPipeline if variant == "fill" else diffusers.FluxPipeline
    pipe = cls(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**flow_scheduler_config("flux1")),
        vae=build_flux_vae(seed),
        text_encoder=build_clip_encoder(seed),
        tokenizer=load_clip_tokenizer("endoftext"),
        text_encoder_2=build_t5_encoder(seed * 1000 + 3),
        tokenizer_2=build_t5_tokenizer(),
        transformer=build_flux_transformer(variant, seed),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_zimage_pipeline(seed: int = 0) -> Any:
    """A seeded fp32 tiny ZImagePipeline."""
    import diffusers

    pipe = diffusers.ZImagePipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**flow_scheduler_config("zimage")),
        vae=build_flux_vae(seed),
        text_encoder=build_qwen_encoder(seed * 1000 + 3),
        tokenizer=build_qwen_tokenizer(),
        transformer=build_zimage_transformer(seed),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
