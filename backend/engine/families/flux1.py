"""FLUX.1 (dev, schnell, Fill and their fine-tunes): a 12B double/single-stream transformer
on 2x2-packed 16-channel latents, CLIP-L (pooled) and T5-XXL text encoders, the Flux VAE.

Detection (BFL layout, optionally under ``model.diffusion_model.``; safetensors or GGUF):
``double_blocks.*.img_attn.norm.key_norm.scale``. dev has ``guidance_in.*`` (distilled
guidance; CFG off), schnell has none (4 steps, no guidance), Fill is dev with a 384-channel
``img_in`` (64 noisy + 64 masked-image + 256 packed-mask channels) and runs every mode through
FluxFillPipeline. Two families share this module: ``flux1`` (dev, Fill, fine-tunes) and
``flux1-schnell`` (timestep-distilled, other defaults).
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
    MemoryPolicy,
    TextEncoder,
    TinySpec,
)
from backend.engine.families.dit_controlnet import flux_controlnet_config
from backend.engine.families.dit_family import DitEmbeds, choose_offload, make_load_hook
from backend.engine.families.dit_format import flux_to_diffusers, strip_prefix
from backend.engine.families.dit_loader import DitSpec, TextSlot

KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
FILL_CHANNELS = 384
GIB = 1024**3


def _keys(keys: Header) -> dict[str, tuple[int, ...]]:
    return strip_prefix(dict(keys))


def is_flux(keys: Header) -> bool:
    """FLUX.1 (dev, schnell, Fill); FLUX.2 shares the block names but has one shared
    ``single_stream_modulation`` (flux2_klein.py)."""
    return (KEY in keys or "model.diffusion_model." + KEY in keys) and not any(
        key.endswith("single_stream_modulation.lin.weight") for key in keys
    )


def is_schnell(keys: Header) -> bool:
    return is_flux(keys) and not any("guidance_in." in key for key in keys)


def is_fill(keys: Header) -> bool:
    shape = _keys(keys).get("img_in.weight")
    return bool(shape) and len(shape) == 2 and shape[1] == FILL_CHANNELS


def config_from_header(header: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A FluxTransformer2DModel config read off a BFL-layout header."""
    keys = _keys(header)
    inner, in_channels = keys["img_in.weight"]
    head = keys[KEY][0]
    count = lambda prefix: len({k.split(".")[1] for k in keys if k.startswith(prefix)})  # noqa: E731
    axes = [16, 56, 56] if head == 128 else [head // 4, 3 * head // 8, 3 * head // 8]
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": keys["final_layer.linear.weight"][0],
        "num_layers": count("double_blocks."),
        "num_single_layers": count("single_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": inner // head,
        "joint_attention_dim": keys["txt_in.weight"][1],
        "pooled_projection_dim": keys["vector_in.in_layer.weight"][1],
        "guidance_embeds": "guidance_in.in_layer.weight" in keys,
        "axes_dims_rope": axes,
    }


def _pipeline_class(config: Mapping[str, Any]) -> str:
    return "FluxFillPipeline" if int(config["in_channels"]) == FILL_CHANNELS else "FluxPipeline"


def _scheduler(config: Mapping[str, Any]) -> dict[str, Any]:
    """FLUX.1-dev's resolution-dependent shift; schnell's fixed shift 1."""
    if not config.get("guidance_embeds", True):
        return {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
    return {
        "num_train_timesteps": 1000,
        "shift": 3.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
    }


SPEC = DitSpec(
    label="Flux.1",
    transformer_class="FluxTransformer2DModel",
    pipeline_class=_pipeline_class,
    text=(
        TextSlot(
            "text_encoder",
            "tokenizer",
            "clip_l",
            "pooled_projection_dim",
            "clip_l.safetensors",
            "tokenizer",
        ),
        TextSlot(
            "text_encoder_2",
            "tokenizer_2",
            "t5",
            "joint_attention_dim",
            "t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors)",
            "tokenizer_2",
        ),
    ),
    hub_repo="black-forest-labs/FLUX.1-schnell",
    convert=flux_to_diffusers,
    config_from_header=config_from_header,
    scheduler=_scheduler,
)


def _is_fill_pipe(pipe: Any) -> bool:
    return int(pipe.transformer.config.in_channels) == FILL_CHANNELS


def encode(pipe: Any, prompt: str, negative_prompt: str = "", **_options: Any) -> DitEmbeds:
    """CLIP-L pooled + T5 sequence embeddings (Flux has no negative prompt)."""
    import torch

    device = getattr(pipe, "_execution_device", None) or torch.device("cpu")
    with torch.inference_mode():
        embeds, pooled, _ids = pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, max_sequence_length=512
        )
    return DitEmbeds({"prompt_embeds": embeds, "pooled_prompt_embeds": pooled})


# ComfyUI's least-squares fit of the Flux VAE decoder (latent -> RGB), 16 channels
PREVIEW = LatentPreview(
    (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    (-0.0329, -0.0718, -0.0851),
)

PIPELINES = {
    ("txt2img", False): "FluxPipeline",
    ("img2img", False): "FluxImg2ImgPipeline",
    ("inpaint", False): "FluxInpaintPipeline",
    ("txt2img", True): "FluxControlNetPipeline",
    ("img2img", True): "FluxControlNetImg2ImgPipeline",
    ("inpaint", True): "FluxControlNetInpaintPipeline",
}
#: InstantX/Shakker FLUX.1 Union: canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low
#: quality 6; line-like maps (lineart, soft edge, scribble) run as its edge (canny) mode
UNION_MODES = {
    "canny": 0,
    "lineart": 0,
    "softedge": 0,
    "scribble": 0,
    "tile": 1,
    "depth": 2,
    "pose": 4,
}
TEXT = (
    TextEncoder("text_encoder", "tokenizer", "endoftext", pooled=True),
    TextEncoder("text_encoder_2", "tokenizer_2", "t5"),
)
#: a 12B transformer in bf16 plus T5-XXL, CLIP-L and the VAE
MEMORY = MemoryPolicy(
    approx_bytes_fp16=int(33.5 * GIB),
    offload=lambda free: choose_offload(int(33.5 * GIB), int(23.8 * GIB), free),
)


def _matches_lora(keys: Header) -> bool:
    """kohya (lora_unet_double_blocks_*), BFL/xlabs (double_blocks.*), diffusers/PEFT
    (transformer.single_transformer_blocks.*) Flux LoRAs."""
    return any(
        part in key
        for key in keys
        for part in ("double_blocks", "single_transformer_blocks", "single_blocks")
    )


def _family(id_: str, label: str, defaults: Defaults, schnell: bool) -> Family:
    return Family(
        id=id_,
        label=label,
        native_size=1024,
        size_multiple=16,
        config_folder="flux1",
        inpaint_config_folder=None,
        controlnet_config_folder=None,
        base_pipeline="FluxPipeline",
        pipelines=PIPELINES,
        text_encoders=TEXT,
        preview=PREVIEW,
        defaults=defaults,
        lora=LoraSpec(
            metadata_versions=("flux1",) if not schnell else (),
            metadata_architectures=("flux-1-schnell",) if schnell else ("flux-1",),
            dotted=lambda keys: True,  # diffusers' names: dotted_to_peft; BFL's: diffusers
        ),
        # no always-listed built-ins: tests write the tiny files (tiny_dit.py, dit_files.py)
        # into a models folder and load them as users' files are loaded
        tiny=TinySpec(),
        memory=MEMORY,
        dedicated_inpaint=not schnell,
        negative_prompt=False,
        cfg=False,
        live=schnell,
        default_vae_file="ae.safetensors",
        vae_scaling_factor=0.3611,
        controlnet_hint="e.g. a Flux.1 {type} or Union ControlNet (diffusers layout)",
        matches_checkpoint=(lambda k: is_schnell(k)) if schnell else (lambda k: is_flux(k)),
        matches_unet_config=(
            (
                lambda c: (
                    c.get("_class_name") == "FluxTransformer2DModel"
                    and not c.get("guidance_embeds", True)
                )
            )
            if schnell
            else (lambda c: c.get("_class_name") == "FluxTransformer2DModel")
        ),
        matches_controlnet=lambda k: (
            any(
                key.startswith("controlnet_single_blocks.") or key.startswith("controlnet_blocks.")
                for key in k
            )
            and "pos_embed_input.weight" not in k
            and not schnell
        ),
        matches_controlnet_config=lambda c: (
            c.get("_class_name") == "FluxControlNetModel" and not schnell
        ),
        matches_lora=(lambda k: False) if schnell else _matches_lora,
        controlnet_class="FluxControlNetModel",
        multi_controlnet_class="FluxMultiControlNetModel",
        controlnet_config=flux_controlnet_config,
        controlnet_modes=UNION_MODES,
        shares_addons_of=("flux1",) if schnell else (),
        inpaint_header=is_fill,
        inpaint_config=lambda c: int(c.get("in_channels", 64)) == FILL_CHANNELS,
        load=make_load_hook(SPEC, id_, 1024, _is_fill_pipe),
        encode=encode,
    )


FAMILY = _family(
    "flux1", "Flux.1", Defaults(sampler="euler", steps=28, cfg_scale=1.0, guidance=3.5), False
)
SCHNELL = _family(
    "flux1-schnell",
    "Flux.1 schnell",
    Defaults(sampler="euler", steps=4, cfg_scale=1.0, guidance=None),
    True,
)
