"""Stable Diffusion 1.x (SD1.5 and its fine-tunes): one CLIP-L text encoder, 512 px.

Detection: an LDM UNet (``model.diffusion_model.input_blocks.0.0.weight``) without SDXL's
``label_emb``/second text encoder, whose cross-attention does not take SD2.x's 1024-wide text (768 for real files; the tiny test
models are narrower).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.engine.families.base import (
    Defaults,
    Family,
    Header,
    LatentPreview,
    LoraSpec,
    TextEncoder,
    TinySpec,
)
from backend.engine.families.headers import UNET, any_prefix, cross_attention_dim

TEXT_WIDTH = 768
SD2_TEXT_WIDTH = 1024  # SD2.x's OpenCLIP-H: another family, not run


def _is_checkpoint(keys: Header) -> bool:
    if UNET + "input_blocks.0.0.weight" not in keys:
        return False
    if UNET + "label_emb.0.0.weight" in keys or any_prefix(keys, "conditioner."):
        return False  # SDXL (base or refiner)
    if "cond_stage_model.model.token_embedding.weight" in keys:
        return False  # SD2.x's OpenCLIP
    return cross_attention_dim(keys, UNET) != SD2_TEXT_WIDTH  # other widths: tiny test models


def _is_unet_config(config: Mapping[str, Any]) -> bool:
    return (
        config.get("addition_embed_type") is None
        and config.get("cross_attention_dim") != SD2_TEXT_WIDTH
    )


def _is_controlnet(keys: Header) -> bool:
    if any(key.endswith(("label_emb.0.0.weight", "add_embedding.linear_1.weight")) for key in keys):
        return False
    return cross_attention_dim(keys) != SD2_TEXT_WIDTH


def _is_lora(keys: Header) -> bool:
    """SD1.5's first UNet block has attention, SDXL's has none (both naming schemes). Asked
    after SDXL's test (the registry's order)."""
    first = (
        "down_blocks_0_attentions_",
        "down_blocks.0.attentions.",
        "input_blocks_1_1_",
        "input_blocks.1.1.",
    )
    return any(part in key for key in keys for part in first)


FAMILY = Family(
    id="sd15",
    label="SD1.5",
    native_size=512,
    hires_strength=0.4,  # 512 px first passes need more new detail
    size_multiple=8,
    config_folder="sd15",
    inpaint_config_folder="sd15-inpaint",
    controlnet_config_folder="controlnet-sd15",
    base_pipeline="StableDiffusionPipeline",
    pipelines={
        ("txt2img", False): "StableDiffusionPipeline",
        ("img2img", False): "StableDiffusionImg2ImgPipeline",
        ("inpaint", False): "StableDiffusionInpaintPipeline",
        ("txt2img", True): "StableDiffusionControlNetPipeline",
        ("img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
        ("inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    },
    text_encoders=(TextEncoder("text_encoder", "tokenizer", "endoftext"),),
    # the widely used least-squares fit of the SD 1.x VAE decoder (ComfyUI's latent formats)
    preview=LatentPreview(
        (
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        )
    ),
    defaults=Defaults(sampler="dpmpp_2m_karras", steps=20, cfg_scale=7.0),
    lora=LoraSpec(
        metadata_versions=("sd_v1",),
        metadata_architectures=("stable-diffusion-v1",),
        text_width=TEXT_WIDTH,
        fallback_prefixes=("lora_te_",),
    ),
    tiny=TinySpec(
        checkpoints={"tiny": False, "tiny-inpaint": True},
        controlnets=("tiny-controlnet",),
        loras=("tiny-lora",),
        ldm_controlnet=True,
    ),
    init_kwargs={
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    },
    load_kwargs={"safety_checker": None, "requires_safety_checker": False},
    index_extra={
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    },
    default_vae_file="vae-ft-mse-840000-ema-pruned.safetensors",
    vae_scaling_factor=0.18215,
    controlnet_hint="e.g. control_v11p_sd15_{type}.safetensors",
    legacy_pickles=True,
    matches_checkpoint=_is_checkpoint,
    matches_unet_config=_is_unet_config,
    matches_controlnet=_is_controlnet,
    matches_controlnet_config=_is_unet_config,
    matches_lora=_is_lora,
    styles=(
        {
            "name": "Photo",
            "prompt": "{prompt}, photograph, natural light, sharp focus, detailed",
            "negative_prompt": "drawing, painting, cartoon, blurry, lowres, watermark, text",
        },
        {
            "name": "Illustration",
            "prompt": "{prompt}, illustration, clean lines, vibrant colors, detailed",
            "negative_prompt": "photo, blurry, lowres, watermark, text, jpeg artifacts",
        },
    ),
)
