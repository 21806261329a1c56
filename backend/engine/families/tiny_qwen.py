"""Tiny Qwen-Image models built in code (tests, CI, demos), and writers that put a complete
tiny set into a models folder the way users keep the real files (ComfyUI layout).

The real layouts at toy sizes: a ``QwenImageTransformer2DModel`` (2x2 packed latents; the
Layered variant with its extra RGB/RGBA time embedding and layer-3D RoPE), a Qwen2.5-VL text
encoder *with* its vision tower (the edit pipelines put the input and reference images into
the text encoder), a byte-level tokenizer with Qwen's special tokens, a ``Qwen2VLProcessor``
capped at a few image patches, and an ``AutoencoderKLQwenImage`` (3 stages: 8x, as the real
one; 4 input channels for Layered's RGBA VAE). Weights are seeded. Files carry their config
(and the text encoder its tokenizer and processor settings) in the safetensors metadata.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

VARIANTS = ("base", "edit", "edit_plus", "layered")
TEXT_HIDDEN = 32
LATENT_CHANNELS = 16  # as the real VAE (and not 4: Layered takes a 4-channel input as latents)
TINY_NATIVE = 64
CONFIG_KEY = "diffusion_layers.dit_config"
TOKENIZER_KEY = "diffusion_layers.tokenizer"
PROCESSOR_KEY = "diffusion_layers.processor"
#: safetensors metadata naming what a checkpoint is (the modelspec convention)
ARCH_KEY = "modelspec.architecture"
ARCHITECTURES = {
    "base": "qwen-image",
    "edit": "qwen-image-edit",
    "edit_plus": "qwen-image-edit-plus",
    "layered": "qwen-image-layered",
}
SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

_TRANSFORMER: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": LATENT_CHANNELS * 4,
    "out_channels": LATENT_CHANNELS,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": TEXT_HIDDEN,
    "guidance_embeds": False,
    "axes_dims_rope": [4, 6, 6],
}

_VAE: dict[str, Any] = {
    "base_dim": 4,
    "z_dim": LATENT_CHANNELS,
    "dim_mult": [1, 2, 2, 2],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "input_channels": 3,
    "latents_mean": [0.0] * LATENT_CHANNELS,
    "latents_std": [1.0] * LATENT_CHANNELS,
}

#: the processor's image side is capped so the tiny vision tower sees at most 4x4 merged
#: patches whatever the pipeline resizes the image to (the edit pipelines use 1024² areas)
_PIXELS = {"min_pixels": 28 * 28, "max_pixels": 112 * 112}


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")


def transformer_config(variant: str = "base") -> dict[str, Any]:
    check_variant(variant)
    config = copy.deepcopy(_TRANSFORMER)
    if variant == "layered":
        config.update(use_additional_t_cond=True, use_layer3d_rope=True)
    return config


def vae_config(rgba: bool = False) -> dict[str, Any]:
    return dict(copy.deepcopy(_VAE), input_channels=4 if rgba else 3)


def build_tokenizer() -> Any:
    """A Qwen2TokenizerFast on a byte-level BPE (no merges) with Qwen's special tokens; the end
    token ``<|im_end|>`` is id 0, which the tiny text encoder's all-zero LM head always picks
    first, so a caption (Layered with an empty prompt) ends after one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    from backend.engine.tokenizer import bytes_to_unicode

    alphabet = sorted(set(bytes_to_unicode().values()))
    vocab = {"<|im_end|>": 0} | {s: i + 1 for i, s in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIALS[1:])})
    return tokenizer


def text_config(tokenizer: Any) -> dict[str, Any]:
    """A Qwen2_5_VLConfig (as a dict) whose special token ids are ``tokenizer``'s."""
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIALS}
    return {
        "text_config": {
            "vocab_size": 512,
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [2, 1, 1],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "out_hidden_size": TEXT_HIDDEN,
            "fullatt_block_indexes": [1],
        },
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }


def build_processor(tokenizer: Any, pixels: dict[str, int] | None = None) -> Any:
    """A Qwen2VLProcessor over ``tokenizer`` (image sides capped by ``pixels``)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    limits = pixels or _PIXELS
    image = Qwen2VLImageProcessorPil(
        min_pixels=limits["min_pixels"],
        max_pixels=limits["max_pixels"],
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    return image_processor_class()(image_processor=image, tokenizer=tokenizer)


def image_processor_class() -> Any:
    """``Qwen2VLProcessor`` without its video part: transformers 5 builds the video processor
    only with torchvision installed (we do not install it) and refuses a missing one; the
    Qwen-Image pipelines never pass videos."""
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, **kwargs: Any):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer)

    return ImageQwen2VLProcessor


def _seeded(seed: int, index: int) -> None:
    import torch

    torch.manual_seed(seed * 1000 + index)


def build_text_encoder(tokenizer: Any, seed: int = 0) -> Any:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _seeded(seed, 3)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**text_config(tokenizer)))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # equal logits: greedy decoding picks id 0, the end
    return model.eval()


OUTPUTS = ("attn.to_out.0.weight", "attn.to_add_out.weight")


def build_transformer(variant: str = "base", seed: int = 0) -> Any:
    """The tiny transformer; its zero-initialised layers get seeded noise and its attention
    outputs and output projection are scaled up (x8) so a 2-step picture clearly depends on
    the prompt, the input and reference images and LoRAs (at x1 the mean pixel change from
    another input image was under 0.1 of 255)."""
    import torch
    from diffusers import QwenImageTransformer2DModel

    _seeded(seed, 1)
    model = QwenImageTransformer2DModel(**transformer_config(variant)).eval()
    generator = torch.Generator().manual_seed(seed * 1000 + 7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.abs().sum() == 0 and param.ndim >= 1 and "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
            if name.endswith(OUTPUTS) or name.startswith("proj_out."):
                param.mul_(8.0)
    return model


def build_vae(rgba: bool = False, seed: int = 0) -> Any:
    """The tiny VAE; its decoder's biases are zero: a random decoder's biases otherwise
    outweigh its latents (decoding zeros and noise gave nearly the same picture), and the
    tests need pictures that answer to the prompt, the input image and LoRAs."""
    import torch
    from diffusers import AutoencoderKLQwenImage

    _seeded(seed, 2)
    model = AutoencoderKLQwenImage(**vae_config(rgba)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") and name.startswith(("decoder.", "post_quant_conv.")):
                param.zero_()
    return model


def scheduler_config() -> dict[str, Any]:
    """Qwen-Image's FlowMatchEulerDiscreteScheduler (dynamic shift, exponential)."""
    return {
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.5,
        "max_shift": 0.9,
        "base_image_seq_len": 256,
        "max_image_seq_len": 8192,
        "shift_terminal": 0.02,
        "time_shift_type": "exponential",
    }


# -- files ---------------------------------------------------------------------------------


def _save(state: dict[str, Any], metadata: dict[str, str], target: Path) -> Path:
    from backend.engine.tiny import _save_atomic

    _save_atomic({k: v.contiguous() for k, v in state.items()}, metadata, target)
    return target


def to_original_text_state(model: Any) -> dict[str, Any]:
    """A Qwen2_5_VLForConditionalGeneration state in the layout Qwen's own checkpoint and
    ComfyUI's ``qwen_2.5_vl_7b*.safetensors`` hold: ``model.layers.*``, ``visual.*``,
    ``lm_head.weight`` (transformers 5 nests them under ``model.language_model`` /
    ``model.visual``)."""
    out: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model.") :]
        elif key.startswith("model.visual."):
            key = key[len("model.") :]
        out[key] = value
    return out


def write_text_encoder(target: Path, *, seed: int = 0) -> Path:
    from backend.engine.families.dit_files import _tokenizer_metadata

    tokenizer = build_tokenizer()
    model = build_text_encoder(tokenizer, seed)
    metadata = {
        CONFIG_KEY: json.dumps(text_config(tokenizer)),
        TOKENIZER_KEY: _tokenizer_metadata(tokenizer),
        PROCESSOR_KEY: json.dumps(_PIXELS),
    }
    return _save(to_original_text_state(model), metadata, target)


def write_vae(target: Path, *, rgba: bool = False, seed: int = 0) -> Path:
    state = dict(build_vae(rgba, seed).state_dict())
    return _save(state, {CONFIG_KEY: json.dumps(vae_config(rgba))}, target)


def write_transformer(
    target: Path, variant: str = "base", *, seed: int = 0, architecture: str | None = None
) -> Path:
    """The transformer alone, diffusers key names under ComfyUI's ``model.diffusion_model.``
    prefix, with its config and ``modelspec.architecture`` (``architecture``, else the
    variant's) in the metadata."""
    model = build_transformer(variant, seed)
    state = {"model.diffusion_model." + k: v for k, v in model.state_dict().items()}
    config = dict(transformer_config(variant), _dl_native_size=TINY_NATIVE)
    metadata = {CONFIG_KEY: json.dumps(config), ARCH_KEY: architecture or ARCHITECTURES[variant]}
    return _save(state, metadata, target)


def write_tiny_qwen_image(models_dir: str | Path, variant: str, *, seed: int = 0) -> str:
    """Write a complete tiny Qwen-Image set of ``variant`` ("base", "edit", "edit_plus",
    "layered") into ``models_dir`` (``checkpoints/``, ``text_encoders/``, ``vae/``; the
    Layered variant's VAE is RGBA) and return the checkpoint name the inventory lists."""
    check_variant(variant)
    root = Path(models_dir)
    name = f"tiny_qwen_image_{variant}"
    write_transformer(root / "checkpoints" / f"{name}.safetensors", variant, seed=seed)
    text = root / "text_encoders" / "tiny_qwen25vl.safetensors"
    if not text.exists():
        write_text_encoder(text, seed=seed)
    rgba = variant == "layered"
    vae = root / "vae" / ("tiny_qwen_image_layered_vae" if rgba else "tiny_qwen_image_vae")
    vae = vae.with_suffix(".safetensors")
    if not vae.exists():
        write_vae(vae, rgba=rgba, seed=seed)
    return name


PIPELINES = {
    "base": "QwenImagePipeline",
    "edit": "QwenImageEditPipeline",
    "edit_plus": "QwenImageEditPlusPipeline",
    "layered": "QwenImageLayeredPipeline",
}


def write_diffusers_folder(target: str | Path, variant: str = "base", *, seed: int = 0) -> Path:
    """A whole tiny pipeline as a diffusers folder laid out like the Hub repositories
    (model_index.json naming ``Qwen2VLProcessor``, ``processor/`` with the image processor's
    ``preprocessor_config.json``)."""
    import diffusers

    check_variant(variant)
    tokenizer = build_tokenizer()
    modules: dict[str, Any] = {
        "transformer": build_transformer(variant, seed),
        "vae": build_vae(variant == "layered", seed),
        "text_encoder": build_text_encoder(tokenizer, seed),
        "tokenizer": tokenizer,
        "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(**scheduler_config()),
    }
    if variant != "base":
        modules["processor"] = build_processor(tokenizer)
    folder = Path(target)
    getattr(diffusers, PIPELINES[variant])(**modules).save_pretrained(str(folder))
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    if "processor" in modules:
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
        modules["processor"].image_processor.save_pretrained(str(folder / "processor"))
    (folder / "model_index.json").write_text(json.dumps(index, indent=2), "utf-8")
    config = json.loads((folder / "transformer" / "config.json").read_text("utf-8"))
    config["dl_native_size"] = TINY_NATIVE
    (folder / "transformer" / "config.json").write_text(json.dumps(config, indent=2), "utf-8")
    return folder
