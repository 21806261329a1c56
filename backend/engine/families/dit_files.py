"""Write the tiny Flux.1 and Z-Image models the way users' files come.

ComfyUI layout: the transformer alone in ``checkpoints/`` (BFL / original keys, in bf16/fp32,
fp8 ``float8_e4m3fn`` or GGUF Q8_0), the text encoders in ``text_encoders/`` (CLIP-L, T5,
Qwen3 in the Hugging Face layout) and the VAE in ``vae/`` (BFL's ``ae.safetensors`` layout).
Tiny files carry their diffusers config (and a text encoder file its tokenizer) in the
safetensors metadata, so they load offline; full-size files are read from their headers.
Also a diffusers folder (``save_pretrained``) of a whole tiny pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.engine.clip_layout import classic_state
from backend.engine.families import dit_format, tiny_dit

CONFIG_KEY = "diffusion_layers.dit_config"
TOKENIZER_KEY = "diffusion_layers.tokenizer"
#: the side the tiny models are generated at (the engine's denoise size for them)
TINY_NATIVE = 64
KIND_KEY = "diffusion_layers.component"
#: GGUF: the metadata field holding our embedded config (ComfyUI-GGUF files hold "general.*")
GGUF_CONFIG_KEY = "diffusion_layers.dit_config"


def _save(state: dict[str, Any], metadata: dict[str, str], target: str | Path) -> Path:
    from backend.engine.tiny import _save_atomic

    _save_atomic({k: v.contiguous() for k, v in state.items()}, metadata, target)
    return Path(target)


def _cast(state: dict[str, Any], dtype: str | None) -> dict[str, Any]:
    """Floating tensors cast to ``dtype`` ("bfloat16", "float8_e4m3fn", ...; None = as is)."""
    import torch

    if dtype is None:
        return state
    target = getattr(torch, dtype)
    return {k: (v.to(target) if v.is_floating_point() else v) for k, v in state.items()}


def _tokenizer_metadata(tokenizer: Any) -> str:
    """The tokenizer as JSON (tokenizer.json's content plus the fast tokenizer's settings)."""
    import transformers

    name = type(tokenizer).__name__  # transformers 5 names the fast class without "Fast"
    if not name.endswith("Fast") and hasattr(transformers, name + "Fast"):
        name += "Fast"  # an alias there, the tokenizers-backed class on 4.x
    extra = getattr(tokenizer, "extra_special_tokens", None)  # transformers 5: a list
    if not isinstance(extra, list):
        extra = list(tokenizer.additional_special_tokens)  # transformers 4.x
    settings = {
        "class": name,
        "special": {
            name: getattr(tokenizer, name)
            for name in ("eos_token", "pad_token", "unk_token", "bos_token")
            if getattr(tokenizer, name, None) is not None
        },
        "additional_special_tokens": extra,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "model_max_length": int(tokenizer.model_max_length),
    }
    return json.dumps({"tokenizer": tokenizer.backend_tokenizer.to_str(), "settings": settings})


def write_flux_transformer(
    target: str | Path,
    variant: str = "dev",
    *,
    seed: int = 0,
    dtype: str | None = None,
    prefix: bool = True,
) -> Path:
    """The tiny Flux.1 transformer as a BFL-layout single file (``prefix``: under
    ``model.diffusion_model.`` as ComfyUI saves them)."""
    model = tiny_dit.build_flux_transformer(variant, seed)
    state = dit_format.flux_to_original(model)
    if prefix:
        state = {dit_format.PREFIX + k: v for k, v in state.items()}
    config = dict(tiny_dit.flux_transformer_config(variant), _dl_native_size=TINY_NATIVE)
    return _save(_cast(state, dtype), {CONFIG_KEY: json.dumps(config)}, target)


def write_zimage_transformer(
    target: str | Path, *, seed: int = 0, dtype: str | None = None
) -> Path:
    model = tiny_dit.build_zimage_transformer(seed)
    state = dit_format.zimage_to_original(model)
    config = dict(tiny_dit.zimage_transformer_config(), _dl_native_size=TINY_NATIVE)
    return _save(_cast(state, dtype), {CONFIG_KEY: json.dumps(config)}, target)


def write_flux_vae(target: str | Path, *, seed: int = 0) -> Path:
    state = dit_format.flux_vae_to_original(tiny_dit.build_flux_vae(seed))
    return _save(state, {CONFIG_KEY: json.dumps(tiny_dit.flux_vae_config())}, target)


def write_clip(target: str | Path, *, seed: int = 0) -> Path:
    model = tiny_dit.build_clip_encoder(seed)
    state = classic_state(model)  # text_model.*, as CLIP-L files hold it (clip_layout.py)
    return _save(state, {CONFIG_KEY: json.dumps(tiny_dit.clip_config())}, target)


def write_t5(target: str | Path, *, seed: int = 0, dtype: str | None = None) -> Path:
    from backend.engine.families.tiny_text import build_t5_encoder, build_t5_tokenizer, t5_config

    model = build_t5_encoder(seed * 1000 + 3)
    state = {k: v for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    metadata = {
        CONFIG_KEY: json.dumps(t5_config()),
        TOKENIZER_KEY: _tokenizer_metadata(build_t5_tokenizer()),
    }
    return _save(_cast(state, dtype), metadata, target)


def write_qwen(target: str | Path, *, seed: int = 0) -> Path:
    """Qwen3 as ComfyUI's ``qwen_3_4b.safetensors``: the HF layout under ``model.``."""
    from backend.engine.families.tiny_text import (
        build_qwen_encoder,
        build_qwen_tokenizer,
        qwen_config,
    )

    model = build_qwen_encoder(seed * 1000 + 3)
    state = {"model." + k: v for k, v in model.state_dict().items()}
    metadata = {
        CONFIG_KEY: json.dumps(qwen_config()),
        TOKENIZER_KEY: _tokenizer_metadata(build_qwen_tokenizer()),
    }
    return _save(state, metadata, target)


def write_gguf(state: dict[str, Any], target: str | Path, config: dict | None = None) -> Path:
    """``state`` as a GGUF file as city96's converter writes diffusion models: 2-D weights
    (``*.weight``) whose rows split into 32-value blocks as Q8_0, everything else as F32 (1-D) or F16."""
    import gguf
    import numpy as np

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(target), arch="flux")
    if config is not None:
        writer.add_string(GGUF_CONFIG_KEY, json.dumps(config))
    for name, tensor in state.items():
        data = tensor.detach().float().cpu().numpy()
        if name.endswith(".weight") and data.ndim == 2 and data.shape[-1] % 32 == 0:
            quantised = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantised, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif data.ndim <= 1:
            writer.add_tensor(name, data.astype(np.float32))
        else:
            writer.add_tensor(name, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def write_flux_gguf(target: str | Path, variant: str = "dev", *, seed: int = 0) -> Path:
    model = tiny_dit.build_flux_transformer(variant, seed)
    state = dit_format.flux_to_original(model)
    config = dict(tiny_dit.flux_transformer_config(variant), _dl_native_size=TINY_NATIVE)
    return write_gguf(state, target, config)


def write_zimage_gguf(target: str | Path, *, seed: int = 0) -> Path:
    state = dit_format.zimage_to_original(tiny_dit.build_zimage_transformer(seed))
    config = dict(tiny_dit.zimage_transformer_config(), _dl_native_size=TINY_NATIVE)
    return write_gguf(state, target, config)


def write_flux_controlnet(target: str | Path, *, union: bool = False, seed: int = 0) -> Path:
    """A tiny Flux ControlNet in the diffusers layout (how InstantX/Shakker ship theirs)."""
    model = tiny_dit.build_flux_controlnet(union, seed)
    config = tiny_dit.flux_controlnet_config(union)
    return _save(dict(model.state_dict()), {CONFIG_KEY: json.dumps(config)}, target)


def write_zimage_controlnet(target: str | Path, *, seed: int = 0) -> Path:
    model = tiny_dit.build_zimage_controlnet(seed)
    config = tiny_dit.zimage_controlnet_config()
    return _save(dict(model.state_dict()), {CONFIG_KEY: json.dumps(config)}, target)


def write_flux_lora(target: str | Path, *, seed: int = 5, rank: int = 4) -> Path:
    """A tiny Flux.1 LoRA in the diffusers/PEFT layout (``transformer.*.lora_A/B``) on the
    attention projections of every block of the tiny transformer, seeded and strong enough
    to change a 2-step picture."""
    import torch

    config = tiny_dit.flux_transformer_config("dev")
    inner = config["attention_head_dim"] * config["num_attention_heads"]
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    blocks = [f"transformer_blocks.{i}" for i in range(config["num_layers"])]
    blocks += [f"single_transformer_blocks.{i}" for i in range(config["num_single_layers"])]
    for block in blocks:
        for name in ("to_q", "to_k", "to_v"):
            prefix = f"transformer.{block}.attn.{name}"
            state[prefix + ".lora_A.weight"] = torch.randn(rank, inner, generator=generator)
            state[prefix + ".lora_B.weight"] = torch.randn(inner, rank, generator=generator)
    return _save(state, {}, target)


def write_comfy_layout(models_dir: str | Path, family: str, *, seed: int = 0) -> dict[str, Path]:
    """The shared files a family needs beside its transformer: text encoders and the VAE."""
    root = Path(models_dir)
    files = {"vae": write_flux_vae(root / "vae" / "tiny_ae.safetensors", seed=seed)}
    if family == "zimage":
        files["qwen"] = write_qwen(root / "text_encoders" / "tiny_qwen3.safetensors", seed=seed)
    else:
        files["clip"] = write_clip(root / "text_encoders" / "tiny_clip_l.safetensors", seed=seed)
        files["t5"] = write_t5(root / "text_encoders" / "tiny_t5xxl.safetensors", seed=seed)
    return files


def write_diffusers_folder(target: str | Path, family: str, variant: str = "dev") -> Path:
    """A whole tiny pipeline as a diffusers folder (model_index.json + component folders)."""
    if family == "zimage":
        pipe = tiny_dit.build_zimage_pipeline()
    else:
        pipe = tiny_dit.build_flux_pipeline(variant)
    pipe.save_pretrained(str(target), safe_serialization=True)
    return Path(target)
