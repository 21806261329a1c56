"""Qwen-Image (20B MMDiT on 2x2-packed 16-channel latents of its own 3-D causal VAE, a
Qwen2.5-VL-7B text encoder) and the checkpoints of the same architecture with other abilities:
Qwen-Image-Edit (instruction edits of one image), Qwen-Image-Edit-Plus (2509/2511: several
images) and Qwen-Image-Layered (decomposition into RGBA layers). Four families in one module,
sharing LoRAs (``shares_addons_of``).

Detection (diffusers key names, optionally under ComfyUI's ``model.diffusion_model.``;
safetensors or GGUF): ``transformer_blocks.0.img_mod.1.weight`` with ``txt_norm.weight`` and
``img_in.weight`` (Qwen-Image-2.1's ``txt_in.text_norm`` is another architecture). Layered has
``time_text_embed.addition_t_embedding.weight`` (its RGB/RGBA time conditioning,
``use_additional_t_cond``). Base, Edit and Edit-Plus files hold the same tensors; only a
diffusers folder's configs tell them apart (model_index.json's ``_class_name``;
``zero_cond_t`` in Edit-2511's transformer config) or safetensors metadata
(``modelspec.architecture``; see ``family_from_metadata``). The documented rule: a single file
whose header cannot tell is Qwen-Image (base) unless its metadata says Edit / Edit-Plus.

Defaults: 50 steps, true CFG 4 (a negative pass), the FlowMatch Euler schedule with dynamic
shift. Lightning LoRAs (4/8 steps, CFG 1) work as any LoRA (docs/engine.md). Memory: about
41 GB in bf16 (transformer 20B, text encoder 8B): model offload on 24-48 GB cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.engine.families.base import (
    DecomposeSpec,
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
from backend.engine.families.dit_family import DitEmbeds, choose_offload, make_load_hook
from backend.engine.families.dit_format import strip_prefix
from backend.engine.families.dit_loader import DitSpec, TextSlot
from backend.engine.families.qwen_run import run_decompose, run_edit

#: Qwen-Image's VAE is Wan 2.1's (fine-tuned decoder): ComfyUI's least-squares fit of the Wan 2.1
#: decoder (normalised latent -> RGB), 16 channels
PREVIEW = LatentPreview(
    (
        (-0.1299, -0.1692, 0.2932),
        (0.0671, 0.0406, 0.0442),
        (0.3568, 0.2548, 0.1747),
        (0.0372, 0.2344, 0.1420),
        (0.0313, 0.0189, -0.0328),
        (0.0296, -0.0956, -0.0665),
        (-0.3477, -0.4059, -0.2925),
        (0.0166, 0.1902, 0.1975),
        (-0.0412, 0.0267, -0.1364),
        (-0.1293, 0.0740, 0.1636),
        (0.0680, 0.3019, 0.1128),
        (0.0032, 0.0581, 0.0639),
        (-0.1251, 0.0927, 0.1699),
        (0.0060, -0.0633, 0.0005),
        (0.3477, 0.2275, 0.2950),
        (0.1984, 0.0913, 0.1861),
    ),
    (-0.1835, -0.0868, -0.3360),
)
KEY = "transformer_blocks.0.img_mod.1.weight"
LAYERED_KEY = "time_text_embed.addition_t_embedding.weight"
GIB = 1024**3
#: Qwen-Image-Edit-2509's model card: "multi-image editing ... optimal performance with 1 to 3
#: input images" (the input image plus up to two references); the pipeline itself takes a list
#: of any length
EDIT_PLUS_REFERENCES = 2
ARCHITECTURES = {
    "qwen-image-layered": "qwen_image_layered",
    "qwen-image-edit-plus": "qwen_image_edit_plus",
    "qwen-image-edit-2509": "qwen_image_edit_plus",
    "qwen-image-edit-2511": "qwen_image_edit_plus",
    "qwen-image-edit": "qwen_image_edit",
    "qwen-image": "qwen_image",
}


def is_qwen_image(keys: Header) -> bool:
    stripped = strip_prefix(dict(keys))
    return (
        KEY in stripped
        and "txt_norm.weight" in stripped
        and "img_in.weight" in stripped
        and "txt_in.text_norm.weight" not in stripped
    )


def is_layered(keys: Header) -> bool:
    return is_qwen_image(keys) and LAYERED_KEY in strip_prefix(dict(keys))


def family_from_metadata(metadata: Mapping[str, str]) -> str | None:
    """The family id safetensors metadata names (``modelspec.architecture`` or
    ``modelspec.title``), longest match first; None when it names none of ours."""
    for field in ("modelspec.architecture", "modelspec.title"):
        text = metadata.get(field, "").lower().replace("_", "-").replace(" ", "-")
        for prefix, family in ARCHITECTURES.items():  # longest first (dict order)
            if text.startswith(prefix):
                return family
    return None


def family_from_config(config: Mapping[str, Any], pipeline_class: str | None = None) -> str:
    """The family of a diffusers folder: its model_index.json ``_class_name`` when given,
    else the transformer config's flags (Layered's ``use_additional_t_cond``, Edit-2511's
    ``zero_cond_t``; base otherwise)."""
    by_class = {
        "QwenImageLayeredPipeline": "qwen_image_layered",
        "QwenImageEditPlusPipeline": "qwen_image_edit_plus",
        "QwenImageEditPipeline": "qwen_image_edit",
    }
    if pipeline_class in by_class:
        return by_class[pipeline_class]
    if config.get("use_additional_t_cond"):
        return "qwen_image_layered"
    if config.get("zero_cond_t"):
        return "qwen_image_edit_plus"
    return "qwen_image"


def config_from_header(header: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A QwenImageTransformer2DModel config read off a header (diffusers key names)."""
    keys = strip_prefix(dict(header))
    inner, in_channels = keys["img_in.weight"]
    head = keys["transformer_blocks.0.attn.norm_q.weight"][0]
    layered = LAYERED_KEY in keys
    return {
        "patch_size": 2,
        "in_channels": in_channels,
        "out_channels": keys["proj_out.weight"][0] // 4,
        "num_layers": len({k.split(".")[1] for k in keys if k.startswith("transformer_blocks.")}),
        "attention_head_dim": head,
        "num_attention_heads": inner // head,
        "joint_attention_dim": keys["txt_in.weight"][1],
        "guidance_embeds": False,
        "axes_dims_rope": [16, 56, 56]
        if head == 128
        else [head // 4, 3 * head // 8, 3 * head // 8],
        "use_additional_t_cond": layered,
        "use_layer3d_rope": layered,
    }


def is_controlnet(keys: Header) -> bool:
    """A Qwen-Image ControlNet (InstantX's Union, diffusers layout): ``controlnet_blocks.*``
    and ``controlnet_x_embedder`` on Qwen-Image's own embedders (``txt_norm``: Flux's have
    none)."""
    return (
        "controlnet_x_embedder.weight" in keys
        and "txt_norm.weight" in keys
        and any(key.startswith("controlnet_blocks.") for key in keys)
    )


def controlnet_config(header: Header) -> dict[str, Any]:
    """A QwenImageControlNetModel config read off a diffusers-layout header."""
    keys = dict(header)
    inner, in_channels = keys["img_in.weight"]
    head = keys["transformer_blocks.0.attn.norm_q.weight"][0]
    return {
        "patch_size": 2,
        "in_channels": in_channels,
        "out_channels": in_channels // 4,
        "num_layers": len({k.split(".")[1] for k in keys if k.startswith("transformer_blocks.")}),
        "attention_head_dim": head,
        "num_attention_heads": inner // head,
        "joint_attention_dim": keys["txt_in.weight"][1],
        "axes_dims_rope": [16, 56, 56]
        if head == 128
        else [head // 4, 3 * head // 8, 3 * head // 8],
        "extra_condition_channels": keys["controlnet_x_embedder.weight"][1] - in_channels,
    }


def _scheduler(config: Mapping[str, Any]) -> dict[str, Any]:
    """Qwen-Image's shipped scheduler config (exponential dynamic shift)."""
    from backend.engine.families.tiny_qwen import scheduler_config

    return scheduler_config()


def _spec(pipeline: str, label: str) -> DitSpec:
    return DitSpec(
        label=label,
        transformer_class="QwenImageTransformer2DModel",
        pipeline_class=lambda config: pipeline,
        text=(TextSlot("text_encoder", "tokenizer", "qwen25vl", "joint_attention_dim", "", ""),),
        hub_repo="Qwen/Qwen-Image-Edit",
        convert=strip_prefix,
        config_from_header=config_from_header,
        scheduler=_scheduler,
        vae_hint="qwen_image_vae.safetensors",
    )


def _qwen_load(source: str, spec: DitSpec, **options: Any) -> Any:
    from backend.engine.families.qwen_loader import load

    return load(source, spec, **options)


def _load_hook(spec: DitSpec, family_id: str) -> Any:
    return make_load_hook(spec, family_id, 1024, loader=_qwen_load)


def encode(pipe: Any, prompt: str, negative_prompt: str = "", **_options: Any) -> DitEmbeds:
    """Qwen2.5-VL embeddings (and masks) of the prompt and the negative prompt; the pipeline
    runs its negative pass (true CFG, its ``true_cfg_scale``) whenever negative embeddings are
    given."""
    import torch

    device = getattr(pipe, "_execution_device", None) or torch.device("cpu")
    with torch.inference_mode():
        positive, mask = pipe.encode_prompt(prompt=prompt, device=device)
        negative, negative_mask = pipe.encode_prompt(prompt=negative_prompt or " ", device=device)
    return DitEmbeds(
        {
            "prompt_embeds": positive,
            "prompt_embeds_mask": mask,
            "negative_prompt_embeds": negative,
            "negative_prompt_embeds_mask": negative_mask,
        }
    )


def _matches_lora(keys: Header) -> bool:
    """Qwen-Image LoRAs: diffusers/PEFT, ComfyUI, bare dotted (Lightning's
    ``transformer_blocks.0.img_mlp.net.0.proj.lora_down``) or kohya (``lora_unet_transformer_
    blocks_0_img_mlp_...``) keys naming the MMDiT's own modules (``img_mlp``/``txt_mlp``/
    ``img_mod``), which Flux's have other names for (BFL's ``double_blocks.*.img_mlp`` excluded)."""
    parts = (".img_mlp.", ".txt_mlp.", ".img_mod.", "_img_mlp_", "_txt_mlp_", "_img_mod_")
    return any(part in key for key in keys for part in parts) and not any(
        "double_blocks" in key or "single_transformer_blocks" in key for key in keys
    )


#: a 20B transformer in bf16 (40.9 GB), Qwen2.5-VL-7B (16.6 GB), the VAE (0.25 GB)
MEMORY = MemoryPolicy(
    approx_bytes_fp16=int(53.5 * GIB),
    offload=lambda free: choose_offload(int(53.5 * GIB), int(38.1 * GIB), free),
)
PIPELINES = {
    ("txt2img", False): "QwenImagePipeline",
    ("img2img", False): "QwenImageImg2ImgPipeline",
    ("inpaint", False): "QwenImageInpaintPipeline",
}


def _family(id_: str, label: str, pipeline: str, **fields: Any) -> Family:
    spec = _spec(pipeline, label)
    values: dict[str, Any] = {
        "id": id_,
        "label": label,
        "native_size": 1024,
        "size_multiple": 16,
        "config_folder": "qwen_image",
        "inpaint_config_folder": None,
        "controlnet_config_folder": None,
        "base_pipeline": pipeline,
        "pipelines": PIPELINES,
        "text_encoders": (TextEncoder("text_encoder", "tokenizer", "qwen"),),
        "preview": PREVIEW,
        "defaults": Defaults(sampler="euler", steps=50, cfg_scale=4.0, guidance=None),
        "lora": LoraSpec(
            metadata_architectures=("qwen-image",) if id_ == "qwen_image" else (),
            dotted=lambda keys: True,  # Qwen-Image-Lightning's layout (lora.dotted_to_peft)
        ),
        "tiny": TinySpec(),  # tiny files: tiny_qwen.write_tiny_qwen_image
        "memory": MEMORY,
        "dedicated_inpaint": False,
        "negative_prompt": True,
        "cfg": True,
        "cfg_argument": "true_cfg_scale",  # its guidance_scale is for guidance-distilled models
        "live": False,
        "default_vae_file": "qwen_image_vae.safetensors",
        "vae_scaling_factor": 1.0,
        "matches_checkpoint": is_qwen_image,
        "matches_unet_config": lambda c: (
            c.get("_class_name") == "QwenImageTransformer2DModel"
            and family_from_config(c, c.get("_pipeline_class_name")) == id_
        ),
        "matches_lora": _matches_lora if id_ == "qwen_image" else (lambda k: False),
        "shares_addons_of": () if id_ == "qwen_image" else ("qwen_image",),
        "load": _load_hook(spec, id_),
        "encode": encode,
    }
    values.update(fields)
    return Family(**values)


FAMILY = _family(
    "qwen_image",
    "Qwen-Image",
    "QwenImagePipeline",
    # txt2img only: diffusers 0.42 has no img2img ControlNet pipeline, and its ControlNet
    # inpaint pipeline takes only inpainting ControlNets (extra condition channels)
    pipelines={**PIPELINES, ("txt2img", True): "QwenImageControlNetPipeline"},
    controlnet_class="QwenImageControlNetModel",
    multi_controlnet_class="QwenImageMultiControlNetModel",
    controlnet_config=controlnet_config,
    matches_controlnet=is_controlnet,
    matches_controlnet_config=lambda c: c.get("_class_name") == "QwenImageControlNetModel",
    controlnet_hint="e.g. InstantX Qwen-Image-ControlNet-Union (diffusers layout)",
    from_metadata=family_from_metadata,  # -Edit/-Edit-Plus files hold the same tensors
)
EDIT = _family(
    "qwen_image_edit",
    "Qwen-Image-Edit",
    "QwenImageEditPipeline",
    edit=EditSpec(max_references=0, run=run_edit),
    matches_checkpoint=lambda k: False,  # by metadata only (family_from_metadata)
)
EDIT_PLUS = _family(
    "qwen_image_edit_plus",
    "Qwen-Image-Edit-Plus",
    "QwenImageEditPlusPipeline",
    edit=EditSpec(max_references=EDIT_PLUS_REFERENCES, run=run_edit),
    matches_checkpoint=lambda k: False,  # by metadata only (family_from_metadata)
)
LAYERED = _family(
    "qwen_image_layered",
    "Qwen-Image-Layered",
    "QwenImageLayeredPipeline",
    pipelines={},
    native_size=640,  # the model card recommends its 640 bucket (1024 is the other)
    decompose=DecomposeSpec(run=run_decompose, min_layers=2, max_layers=8, default_layers=4),
    matches_checkpoint=is_layered,
    default_vae_file="qwen_image_layered_vae.safetensors",
    negative_prompt=True,
)
#: in detection order (Layered's extra key first; base last)
FAMILIES = (LAYERED, EDIT_PLUS, EDIT, FAMILY)
