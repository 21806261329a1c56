"""Random-weight Flux.1 schnell and Z-Image Turbo pipelines for the benchmark.

Full size: the real architectures (a 12B FLUX.1 transformer with CLIP-L and T5-XXL, a 6B
Z-Image transformer with Qwen3-4B; the Flux VAE), built on the device in the benchmark dtype,
so timings match the real checkpoints without downloading them. The tokenizers are the tiny
ones built in code (backend/engine/families/tiny_text.py): both sides pad every prompt to the
same fixed length (``max_sequence_length``), so the encoders do the same work as with the real
vocabularies. Tiny (``--tiny``): the engine's tiny Flux.1 / Z-Image models (64 px, CPU).
"""

from __future__ import annotations

from typing import Any

#: FLUX.1 [schnell]'s transformer (BFL's flux1-schnell: 19 double, 38 single blocks, 3072 wide)
FLUX_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": False,
    "axes_dims_rope": [16, 56, 56],
}
#: Z-Image Turbo's transformer (30 layers, 3840 wide, 2 refiner layers, Qwen3-4B captions)
ZIMAGE_TRANSFORMER: dict[str, Any] = {
    "all_patch_size": [2],
    "all_f_patch_size": [1],
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 2560,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
}
CLIP_L: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
T5_XXL: dict[str, Any] = {
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "is_gated_act": True,
    "dense_act_fn": "gelu_new",
    "tie_word_embeddings": False,
}
QWEN3_4B: dict[str, Any] = {
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}


def build_dit_pipeline(family: str, tiny: bool, device: str, dtype: Any) -> Any:
    """The benchmark pipeline of ``family`` (a Flux.1 or Z-Image family id)."""
    from backend.engine import families

    single_stream = families.get(family).base_pipeline == "ZImagePipeline"
    if tiny:
        from backend.engine.families.tiny_dit import build_flux_pipeline, build_zimage_pipeline

        pipe = build_zimage_pipeline() if single_stream else build_flux_pipeline("schnell")
        # saved into transformer/config.json: our server denoises the tiny model at 64 px
        pipe.transformer.register_to_config(dl_native_size=64)
        return pipe.to(dtype=dtype)
    import diffusers
    import torch
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        Qwen3Config,
        Qwen3Model,
        T5Config,
        T5EncoderModel,
    )

    from backend.engine.families import flux1, zimage
    from backend.engine.families.dit_components import flux_vae_config
    from backend.engine.families.tiny_text import build_qwen_tokenizer, build_t5_tokenizer
    from backend.engine.tokenizer import load_clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        vae = diffusers.AutoencoderKL(**flux_vae_config()).to(dtype)
        if single_stream:
            parts: dict[str, Any] = {
                "transformer": diffusers.ZImageTransformer2DModel(**ZIMAGE_TRANSFORMER).to(dtype),
                "text_encoder": Qwen3Model(Qwen3Config(**QWEN3_4B)).to(dtype),
            }
        else:
            parts = {
                "transformer": diffusers.FluxTransformer2DModel(**FLUX_TRANSFORMER).to(dtype),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)).to(dtype),
                "text_encoder_2": T5EncoderModel(T5Config(**T5_XXL)).to(dtype),
            }
    spec = zimage.SPEC if single_stream else flux1.SPEC
    config = ZIMAGE_TRANSFORMER if single_stream else FLUX_TRANSFORMER
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**spec.scheduler(config))
    if single_stream:
        return diffusers.ZImagePipeline(
            scheduler=scheduler, vae=vae, tokenizer=build_qwen_tokenizer(), **parts
        )
    return diffusers.FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        tokenizer=load_clip_tokenizer("endoftext"),
        tokenizer_2=build_t5_tokenizer(),
        **parts,
    )
