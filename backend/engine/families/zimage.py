"""Z-Image (Turbo): a 6B single-stream transformer with refiner layers on 16-channel Flux-VAE
latents, a Qwen3-4B text encoder (second-to-last hidden state of a chat-templated prompt).

Detection (original layout, optionally under ``model.diffusion_model.``; safetensors or GGUF):
``layers.0.adaLN_modulation.0.weight`` with ``cap_embedder`` (the key diffusers' single-file
loader checks). Turbo defaults: 8 steps, CFG 1 (no negative pass), Euler on the flow-matching
schedule with shift 3; fast enough for live painting.
"""

from __future__ import annotations

from typing import Any

from backend.engine.families.base import (
    Defaults,
    Family,
    Header,
    LoraSpec,
    MemoryPolicy,
    TextEncoder,
    TinySpec,
)
from backend.engine.families.dit_family import DitEmbeds, choose_offload, make_load_hook
from backend.engine.families.dit_format import strip_prefix
from backend.engine.families.dit_loader import DitSpec, TextSlot
from backend.engine.families.flux1 import PREVIEW

KEY = "layers.0.adaLN_modulation.0.weight"
GIB = 1024**3


def is_zimage(keys: Header) -> bool:
    stripped = strip_prefix(dict(keys))
    return KEY in stripped and any(key.startswith("cap_embedder.") for key in stripped)


def config_from_header(header: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A ZImageTransformer2DModel config read off an original-layout header."""
    keys = strip_prefix(dict(header))
    dim, patch_in = keys["x_embedder.weight"]
    head = keys["layers.0.attention.q_norm.weight"][0]
    qkv = keys["layers.0.attention.qkv.weight"][0]
    count = lambda prefix: len({k.split(".")[1] for k in keys if k.startswith(prefix)})  # noqa: E731
    return {
        "all_patch_size": [2],
        "all_f_patch_size": [1],
        "in_channels": patch_in // 4,
        "dim": dim,
        "n_layers": count("layers."),
        "n_refiner_layers": count("noise_refiner."),
        "n_heads": dim // head,
        "n_kv_heads": (qkv - dim) // (2 * head),
        "norm_eps": 1e-5,
        "qk_norm": True,
        "cap_feat_dim": keys["cap_embedder.0.weight"][0],
        "rope_theta": 256.0,
        "t_scale": 1000.0,
        "axes_dims": [32, 48, 48] if head == 128 else [head // 4, 3 * head // 8, 3 * head // 8],
        "axes_lens": [1536, 512, 512],
    }


SPEC = DitSpec(
    label="Z-Image",
    transformer_class="ZImageTransformer2DModel",
    pipeline_class=lambda config: "ZImagePipeline",
    text=(
        TextSlot(
            "text_encoder",
            "tokenizer",
            "qwen3",
            "cap_feat_dim",
            "qwen_3_4b.safetensors",
            "tokenizer",
        ),
    ),
    hub_repo="Tongyi-MAI/Z-Image-Turbo",
    convert=None,  # diffusers' own converter works for any width
    config_from_header=config_from_header,
    scheduler=lambda config: {
        "num_train_timesteps": 1000,
        "shift": 3.0,
        "use_dynamic_shifting": False,
    },
)


def encode(pipe: Any, prompt: str, negative_prompt: str = "", **_options: Any) -> DitEmbeds:
    """Qwen3 embeddings of the prompt and the negative prompt (used when CFG > 1)."""
    import torch

    device = getattr(pipe, "_execution_device", None) or torch.device("cpu")
    with torch.inference_mode():
        positive, negative = pipe.encode_prompt(
            prompt=prompt,
            device=device,
            do_classifier_free_guidance=True,
            negative_prompt=negative_prompt or "",
            max_sequence_length=512,
        )
    return DitEmbeds({"prompt_embeds": positive, "negative_prompt_embeds": negative})


def _dotted_loads(keys: Header) -> bool:
    """Bare dotted Z-Image LoRAs load in diffusers' layer names (``layers.0.attention.to_q``,
    lora.dotted_to_peft); the original fused ``attention.qkv``/``attention.out`` names do not
    (diffusers splits them only in its ``.lora.down`` layout)."""
    return not any(".attention.qkv." in key or ".attention.out." in key for key in keys)


def _matches_lora(keys: Header) -> bool:
    """Z-Image LoRAs: diffusers/PEFT (``transformer.layers.N.attention.to_q``) or the original
    layout (``diffusion_model.layers.N.attention.qkv``)."""
    return any(
        ("layers." in key and ".attention." in key and "lora" in key.lower())
        or "noise_refiner" in key
        for key in keys
    ) and not any("double_blocks" in key or "transformer_blocks" in key for key in keys)


FAMILY = Family(
    id="zimage",
    label="Z-Image",
    native_size=1024,
    size_multiple=16,
    config_folder="zimage",
    inpaint_config_folder=None,
    controlnet_config_folder=None,
    base_pipeline="ZImagePipeline",
    pipelines={
        ("txt2img", False): "ZImagePipeline",
        ("img2img", False): "ZImageImg2ImgPipeline",
        ("inpaint", False): "ZImageInpaintPipeline",
        # txt2img only: diffusers 0.42 has no img2img ControlNet pipeline, and its
        # ZImageControlNetInpaintPipeline takes only Union-2.0 files (control_in_dim 33), which
        # we do not tell apart at submit yet: img2img/inpaint with a control are refused (422)
        ("txt2img", True): "ZImageControlNetPipeline",
    },
    text_encoders=(TextEncoder("text_encoder", "tokenizer", "qwen"),),
    preview=PREVIEW,  # the same VAE as Flux
    defaults=Defaults(sampler="euler", steps=8, cfg_scale=1.0, guidance=None),
    lora=LoraSpec(metadata_architectures=("z-image",), dotted=_dotted_loads),
    tiny=TinySpec(),  # tiny files: tiny_dit.py / dit_files.py (tests write them)
    memory=MemoryPolicy(
        approx_bytes_fp16=int(20.5 * GIB),
        offload=lambda free: choose_offload(int(20.5 * GIB), int(11.5 * GIB), free),
    ),
    dedicated_inpaint=False,
    negative_prompt=True,
    cfg=True,
    live=True,
    default_vae_file="ae.safetensors",
    vae_scaling_factor=0.3611,
    controlnet_hint="e.g. Z-Image-Turbo-Fun-Controlnet-Union (a Z-Image ControlNet)",
    matches_checkpoint=is_zimage,
    matches_unet_config=lambda c: c.get("_class_name") == "ZImageTransformer2DModel",
    matches_controlnet=lambda k: any(key.startswith("control_layers.") for key in k),
    matches_controlnet_config=lambda c: c.get("_class_name") == "ZImageControlNetModel",
    matches_lora=_matches_lora,
    controlnet_class="ZImageControlNetModel",
    multi_controlnet_class=None,
    load=make_load_hook(SPEC, "zimage", 1024, lambda pipe: False),
    encode=encode,
)
