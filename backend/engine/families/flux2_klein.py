"""FLUX.2 klein (4B and 9B, distilled and base): a double/single-stream transformer with shared
modulations on 2x2-patchified 32-channel latents (128 transformer channels), fed by three
stacked hidden states of a Qwen3 text encoder (Qwen3-4B for 4B, Qwen3-8B for 9B), the FLUX.2
VAE (batch-normalised latents). It generates, and it edits by instruction with up to three
reference images (flux2_edit.py).

Detection (BFL layout, optionally under ``model.diffusion_model.``; safetensors or GGUF):
``single_stream_modulation.lin.weight`` (the key diffusers' single-file loader checks for
FLUX.2) without ``guidance_in.*`` (FLUX.2 dev has a guidance embedding and a Mistral encoder).
FLUX.1 files share ``double_blocks.*`` names but have per-block modulations and no
``single_stream_modulation``: this family is listed before FLUX.1 in the registry.

Distilled defaults: 4 steps, CFG 1 (the distilled pipeline ignores CFG: ``is_distilled``), no
negative prompt; fast enough for live painting and live edits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.engine.families import flux2_edit, flux2_load, flux2_pipes
from backend.engine.families.base import (
    Defaults,
    EditSpec,
    Family,
    Header,
    LatentPreview,
    LoraSpec,
    MemoryPolicy,
    TextEncoder,
    TinySpec,
)
from backend.engine.families.dit_family import DitEmbeds, choose_offload
from backend.engine.families.dit_format import strip_prefix
from backend.engine.families.dit_loader import DitSpec, TextSlot

KEY = "single_stream_modulation.lin.weight"
HEAD_KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
GIB = 1024**3
#: the transformer widths of klein 4B (24 heads of 128) and 9B (32 heads of 128)
KLEIN_WIDTHS = (3072, 4096)


def is_flux2(keys: Header) -> bool:
    return KEY in keys or "model.diffusion_model." + KEY in keys


def is_klein(keys: Header) -> bool:
    """A FLUX.2 transformer without a guidance embedding, fed by a Qwen3 (3 stacked states)."""
    if not is_flux2(keys):
        return False
    stripped = strip_prefix(dict(keys))
    text = stripped.get("txt_in.weight")
    return (
        not any(key.startswith("guidance_in.") for key in stripped)
        and text is not None
        and len(text) == 2
        and text[1] % 3 == 0
    )


def config_from_header(header: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A Flux2Transformer2DModel config read off a BFL-layout header."""
    keys = strip_prefix(dict(header))
    inner, in_channels = keys["img_in.weight"]
    head = keys[HEAD_KEY][0]
    count = lambda prefix: len({k.split(".")[1] for k in keys if k.startswith(prefix)})  # noqa: E731
    mlp = keys.get("double_blocks.0.img_mlp.0.weight")
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": keys["final_layer.linear.weight"][0],
        "num_layers": count("double_blocks."),
        "num_single_layers": count("single_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": inner // head,
        "joint_attention_dim": keys["txt_in.weight"][1],
        "timestep_guidance_channels": keys["time_in.in_layer.weight"][1],
        "mlp_ratio": (mlp[0] / (2 * inner)) if mlp else 3.0,
        "axes_dims_rope": [head // 4] * 4,
        "rope_theta": 2000,
        "eps": 1e-6,
        "guidance_embeds": "guidance_in.in_layer.weight" in keys,
    }


SPEC = DitSpec(
    label="FLUX.2 klein",
    transformer_class="Flux2Transformer2DModel",
    pipeline_class=lambda config: "DLFlux2KleinPipeline",
    text=(
        TextSlot(
            "text_encoder",
            "tokenizer",
            "qwen3",
            "joint_attention_dim",
            flux2_load.TEXT_HINT,
            "tokenizer",
        ),
    ),
    hub_repo=flux2_load.HUB_REPO,
    # ComfyUI's prefix off; then diffusers' own FLUX.2 converter (any width) in from_single_file
    convert=strip_prefix,
    config_from_header=config_from_header,
    scheduler=lambda config: {},
    vae_hint=flux2_load.VAE_HINT,
)


def out_layers(text_encoder: Any) -> tuple[int, int, int]:
    """The hidden states klein stacks: (9, 18, 27) of Qwen3's 36 layers, the same quarters
    of a smaller (tiny) encoder."""
    layers = int(text_encoder.config.num_hidden_layers)
    return (layers // 4, layers // 2, 3 * layers // 4)


def distilled(pipe: Any) -> bool:
    return bool(getattr(pipe.config, "is_distilled", True))


def encode(pipe: Any, prompt: str, negative_prompt: str = "", **_options: Any) -> DitEmbeds:
    """Qwen3 embeddings of the prompt; of the negative prompt too for a base (non-distilled)
    model, whose pipeline runs CFG when ``guidance_scale`` > 1."""
    import torch

    device = getattr(pipe, "_execution_device", None) or torch.device("cpu")
    layers = out_layers(pipe.text_encoder)
    with torch.inference_mode():
        embeds, _ids = pipe.encode_prompt(prompt, device=device, text_encoder_out_layers=layers)
        kwargs = {"prompt_embeds": embeds}
        if not distilled(pipe):
            negative, _ids = pipe.encode_prompt(
                negative_prompt or "", device=device, text_encoder_out_layers=layers
            )
            kwargs["negative_prompt_embeds"] = negative
    return DitEmbeds(kwargs)


#: ComfyUI's latent -> RGB factors for FLUX.2 (comfy/latent_formats.py, class Flux2: one row
#: per VAE latent channel of the batch-normalised latents, after un-patchifying 128 -> 32)
PREVIEW = LatentPreview(
    (
        (0.0058, 0.0113, 0.0073),
        (0.0495, 0.0443, 0.0836),
        (-0.0099, 0.0096, 0.0644),
        (0.2144, 0.3009, 0.3652),
        (0.0166, -0.0039, -0.0054),
        (0.0157, 0.0103, -0.0160),
        (-0.0398, 0.0902, -0.0235),
        (-0.0052, 0.0095, 0.0109),
        (-0.3527, -0.2712, -0.1666),
        (-0.0301, -0.0356, -0.0180),
        (-0.0107, 0.0078, 0.0013),
        (0.0746, 0.0090, -0.0941),
        (0.0156, 0.0169, 0.0070),
        (-0.0034, -0.0040, -0.0114),
        (0.0032, 0.0181, 0.0080),
        (-0.0939, -0.0008, 0.0186),
        (0.0018, 0.0043, 0.0104),
        (0.0284, 0.0056, -0.0127),
        (-0.0024, -0.0022, -0.0030),
        (0.1207, -0.0026, 0.0065),
        (0.0128, 0.0101, 0.0142),
        (0.0137, -0.0072, -0.0007),
        (0.0095, 0.0092, -0.0059),
        (0.0000, -0.0077, -0.0049),
        (-0.0465, -0.0204, -0.0312),
        (0.0095, 0.0012, -0.0066),
        (0.0290, -0.0034, 0.0025),
        (0.0220, 0.0169, -0.0048),
        (-0.0332, -0.0457, -0.0468),
        (-0.0085, 0.0389, 0.0609),
        (-0.0076, 0.0003, -0.0043),
        (-0.0111, -0.0460, -0.0614),
    ),
    (-0.0329, -0.0718, -0.0851),
)

#: FLUX.2-only LoRA module names (diffusers/PEFT layout) ...
_LORA_NAMES = ("to_qkv_mlp_proj", "ff.linear_in", "ff_context.linear_in", "stream_modulation")
#: ... and, for BFL/kohya names FLUX.1 shares, the output widths only klein's layers have:
#: single-block linear1 (9 x width), double-block MLP input (6 x width)
_LORA_WIDTHS = {9 * w for w in KLEIN_WIDTHS} | {6 * w for w in KLEIN_WIDTHS}


def matches_lora(keys: Header) -> bool:
    """ai-toolkit/BFL (``diffusion_model.double_blocks.*``), kohya (``lora_unet_*``) and
    diffusers/PEFT (``transformer.*``) klein LoRAs, by FLUX.2-only names or widths."""
    for key, shape in keys.items():
        if any(name in key for name in _LORA_NAMES):
            return True
        up = any(part in key for part in ("lora_B", "lora_up"))
        layer = any(part in key for part in ("linear1", "img_mlp", "txt_mlp"))
        if up and layer and len(shape) == 2 and shape[0] in _LORA_WIDTHS:
            return True
    return False


def _matches_config(config: Mapping[str, Any]) -> bool:
    return config.get("_class_name") == "Flux2Transformer2DModel" and not config.get(
        "guidance_embeds", True
    )


FAMILY = Family(
    id="flux2_klein",
    label="FLUX.2 klein",
    native_size=1024,
    size_multiple=16,
    config_folder="flux2_klein",
    inpaint_config_folder=None,
    controlnet_config_folder=None,
    base_pipeline="DLFlux2KleinPipeline",
    pipelines={
        ("txt2img", False): "DLFlux2KleinPipeline",
        ("img2img", False): "DLFlux2KleinImg2ImgPipeline",
        ("inpaint", False): "DLFlux2KleinInpaintPipeline",
    },
    text_encoders=(TextEncoder("text_encoder", "tokenizer", "qwen"),),
    preview=PREVIEW,
    defaults=Defaults(sampler="euler", steps=4, cfg_scale=1.0, guidance=None),
    lora=LoraSpec(
        metadata_versions=("flux2_klein", "flux2-klein", "flux.2-klein"),
        metadata_architectures=("flux-2-klein", "flux.2-klein", "flux2-klein"),
    ),
    tiny=TinySpec(),  # tiny files: tiny_flux2.write_tiny_flux2_klein (tests write them)
    # klein 4B in bf16: transformer ~7.2 GiB, Qwen3-4B ~7.5 GiB, VAE ~0.2 GiB
    memory=MemoryPolicy(
        approx_bytes_fp16=int(15 * GIB),
        offload=lambda free: choose_offload(int(15 * GIB), int(7.5 * GIB), free),
    ),
    dedicated_inpaint=False,
    negative_prompt=False,
    cfg=False,
    live=True,
    default_vae_file=flux2_load.VAE_HINT,
    vae_scaling_factor=1.0,  # batch-normalised latents: no scaling factor
    matches_checkpoint=is_klein,
    matches_unet_config=_matches_config,
    matches_lora=matches_lora,
    load=flux2_load.make_load_hook(SPEC, "flux2_klein", 1024),
    encode=encode,
    pipeline_classes=flux2_pipes.classes,  # DLFlux2Klein*: img2img and step previews
    edit=EditSpec(max_references=flux2_edit.MAX_REFERENCES, run=flux2_edit.run, live=True),
)
