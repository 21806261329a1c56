"""Stable Diffusion XL (base and its fine-tunes: Illustrious, NoobAI, Pony, ...): CLIP-L plus
OpenCLIP-bigG text encoders, "text_time" conditioning, 1024 px in 64 px buckets.

Detection: an LDM UNet with ``label_emb`` or a second text encoder
(``conditioner.embedders.1.*``); the refiner (OpenCLIP only, ``conditioner.embedders.0.model.*``)
is not this family.
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
from backend.engine.families.headers import UNET, any_prefix

TEXT_WIDTH = 2048


def _is_checkpoint(keys: Header) -> bool:
    if UNET + "input_blocks.0.0.weight" not in keys:
        return False
    if any_prefix(keys, "conditioner.embedders.0.model."):
        return False  # the SDXL refiner: OpenCLIP-bigG alone
    return UNET + "label_emb.0.0.weight" in keys or any_prefix(keys, "conditioner.embedders.1.")


def _is_unet_config(config: Mapping[str, Any]) -> bool:
    return config.get("addition_embed_type") == "text_time"


def _is_controlnet(keys: Header) -> bool:
    return any(
        key.endswith(("label_emb.0.0.weight", "add_embedding.linear_1.weight")) for key in keys
    )


def _is_lora(keys: Header) -> bool:
    """Two text encoders, or UNet attention blocks deeper than SD1.5 has (a transformer
    family's ``transformer_blocks.1.`` outside a UNet block is not SDXL's)."""
    if any_prefix(keys, "lora_te1_", "lora_te2_", "text_encoder_2.", "te2."):
        return True
    unet = (
        "down_blocks",
        "up_blocks",
        "mid_block",
        "input_blocks",
        "output_blocks",
        "middle_block",
    )
    return any(
        ("transformer_blocks_1_" in key or "transformer_blocks.1." in key)
        and any(block in key for block in unet)
        for key in keys
    )


FAMILY = Family(
    id="sdxl",
    label="SDXL",
    native_size=1024,
    hires_strength=0.3,  # 1024 px first passes already hold detail
    size_multiple=64,
    config_folder="sdxl",
    inpaint_config_folder="sdxl-inpaint",
    controlnet_config_folder="controlnet-sdxl",
    base_pipeline="StableDiffusionXLPipeline",
    pipelines={
        ("txt2img", False): "StableDiffusionXLPipeline",
        ("img2img", False): "StableDiffusionXLImg2ImgPipeline",
        ("inpaint", False): "StableDiffusionXLInpaintPipeline",
        ("txt2img", True): "StableDiffusionXLControlNetPipeline",
        ("img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
        ("inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
    },
    text_encoders=(
        TextEncoder("text_encoder", "tokenizer", "endoftext"),
        TextEncoder("text_encoder_2", "tokenizer_2", "bang", pooled=True),
    ),
    # the widely used least-squares fit of the SDXL VAE decoder (ComfyUI's latent formats)
    preview=LatentPreview(
        (
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        (0.1084, -0.0175, -0.0011),
    ),
    defaults=Defaults(sampler="dpmpp_2m_karras", steps=20, cfg_scale=7.0),
    lora=LoraSpec(
        metadata_versions=("sdxl",),
        metadata_architectures=("stable-diffusion-xl",),
        text_width=TEXT_WIDTH,
    ),
    tiny=TinySpec(
        checkpoints={"tiny-sdxl": False, "tiny-sdxl-inpaint": True},
        controlnets=("tiny-sdxl-controlnet",),
        ldm_controlnet=False,  # SDXL ControlNets ship in the diffusers layout
        # tiny.py's base UNet with SDXL's layout: no attention in the first block, two text
        # encoders (32 + 48 wide), "text_time" conditioning (6 x 8 time ids + 32 pooled)
        unet={
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "cross_attention_dim": 32 + 48,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "transformer_layers_per_block": 1,
            "use_linear_projection": True,
            "attention_head_dim": [4, 8],
        },
        vae={"force_upcast": False},
    ),
    init_kwargs={"force_zeros_for_empty_prompt": True},
    index_extra={"force_zeros_for_empty_prompt": True},
    force_zeros_for_empty_prompt=True,
    default_vae_file="sdxl_vae.safetensors",
    vae_scaling_factor=0.13025,
    controlnet_hint="e.g. a {type} ControlNet for SDXL (diffusers_xl_{type}.safetensors)",
    pickle_name_hints=("xl",),
    matches_checkpoint=_is_checkpoint,
    matches_unet_config=_is_unet_config,
    matches_controlnet=_is_controlnet,
    matches_controlnet_config=_is_unet_config,
    matches_lora=_is_lora,
    styles=(
        {
            "name": "Photo",
            "prompt": "{prompt}, photograph, natural light, sharp focus, highly detailed",
            "negative_prompt": "drawing, painting, cartoon, blurry, lowres, watermark, text",
        },
        {
            "name": "Concept Art",
            "prompt": "{prompt}, concept art, digital painting, dramatic lighting, detailed",
            "negative_prompt": "photo, blurry, lowres, watermark, text",
        },
    ),
)
