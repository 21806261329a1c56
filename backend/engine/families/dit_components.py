"""The separate files a Flux.1 or Z-Image transformer needs, found and loaded offline.

Users keep them as ComfyUI does: text encoders in ``models_dir/text_encoders/`` (or ``clip/``),
the VAE in ``models_dir/vae/``. Each file is told apart by its header (never its name): CLIP-L,
T5 or Qwen3 text encoder and its width, a 16-channel (Flux) VAE. Configs come from the file's
embedded config (the tiny built-ins) or are read off the tensor shapes; tokenizers from the
file's embedded tokenizer, a tokenizer folder beside it, the Hugging Face cache of the
family's Hub repository, or for CLIP from ``tokenizer.py``. fp8 weights are upcast to the
compute dtype when loaded. A missing file is a sentence naming what to put where.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engine.clip_layout import model_state
from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

CONFIG_KEY = "diffusion_layers.dit_config"
TOKENIZER_KEY = "diffusion_layers.tokenizer"
TEXT_FOLDERS = ("text_encoders", "clip")
VAE_FOLDER = "vae"
SUFFIXES = (".safetensors", ".gguf")


@dataclass(frozen=True)
class Component:
    kind: str  # "clip_l" | "t5" | "qwen3" | "vae16"
    width: int  # hidden size (text encoders) or latent channels (VAE)
    path: Path


def read_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor names -> shapes and string metadata of a .safetensors or .gguf file."""
    from backend.engine.detect import read_header as read_any

    keys, metadata = read_any(path)
    return dict(keys), metadata


def read_gguf_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor names -> shapes (torch order) and string metadata of a .gguf file, without
    reading tensor data (the file is memory-mapped)."""
    path = Path(path)
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError/OSError kinds on damaged files
        log.warning("reading the GGUF header of %s failed: %s", path, exc)
        raise ModelLoadError(
            f"{path.name} is not a readable GGUF file: it is damaged or was cut short "
            "(download it again)."
        ) from exc
    keys = {t.name: tuple(int(n) for n in reversed(t.shape.tolist())) for t in reader.tensors}
    metadata: dict[str, str] = {}
    for name, field in reader.fields.items():
        if name.startswith(("diffusion_layers.", "general.")) and field.types:
            try:
                value = field.contents()
            except (AttributeError, ValueError, IndexError):
                continue
            if isinstance(value, str):
                metadata[name] = value
    return keys, metadata


def classify(keys: dict[str, tuple[int, ...]]) -> tuple[str, int] | None:
    """(kind, width) of a text encoder or VAE file from its header, None for anything else."""
    if "text_model.final_layer_norm.weight" in keys:
        return "clip_l", keys["text_model.final_layer_norm.weight"][0]
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in keys:
        return "t5", keys["encoder.final_layer_norm.weight"][0]
    for prefix in ("model.", ""):
        if f"{prefix}layers.0.self_attn.q_norm.weight" in keys and f"{prefix}norm.weight" in keys:
            return "qwen3", keys[f"{prefix}norm.weight"][0]
    for prefix in ("", "first_stage_model.", "vae."):
        conv = keys.get(f"{prefix}decoder.conv_in.weight")
        if conv is not None and len(conv) == 4 and conv[1] == 16:
            return "vae16", 16
    return None


def scan(models_dir: str | Path | None) -> list[Component]:
    """Every text encoder and 16-channel VAE under the models folder, by name."""
    if not models_dir:
        return []
    found: list[Component] = []
    for folder in (*TEXT_FOLDERS, VAE_FOLDER):
        root = Path(models_dir) / folder
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES):
            try:
                keys, _ = read_header(path)
            except ModelLoadError as exc:
                log.warning("skipping %s: %s", path, exc)
                continue
            kind = classify(keys)
            if kind is not None:
                found.append(Component(kind[0], kind[1], path))
    return found


def pick(components: list[Component], kind: str, width: int | None, missing: str) -> Component:
    """The first ``kind`` component of ``width`` (None = any); ModelLoadError(missing) else."""
    for component in components:
        if component.kind == kind and (width is None or component.width == width):
            return component
    raise ModelLoadError(missing)


# -- loading -------------------------------------------------------------------------------


def load_state(path: Path, dtype: Any | None) -> dict[str, Any]:
    """A file's tensors (GGUF: diffusers' GGUFParameter, still quantised); floating tensors
    of another precision (fp8, bf16) cast to ``dtype``."""
    if path.suffix.lower() == ".gguf":
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return load_gguf_checkpoint(str(path))
    from safetensors.torch import load_file

    state = load_file(str(path))
    if dtype is None:
        return state
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}


def embedded(metadata: dict[str, str], key: str = CONFIG_KEY) -> dict | None:
    text = metadata.get(key)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ModelLoadError(f"The embedded {key} of a model file is damaged.") from exc


def _build(cls: Any, config: Any, state: dict[str, Any], name: str) -> Any:
    """``cls(config)`` without random initialisation, then ``state`` assigned."""
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls(config)
    # Files name CLIP-L's weights text_model.*; transformers 5's CLIPTextModel has no prefix.
    result = model.load_state_dict(model_state(model, state), strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [k for k, v in model.named_parameters() if v.is_meta]
    if missing:
        raise ModelLoadError(
            f"{name} is incomplete: it lacks {len(missing)} weights (e.g. {missing[0]}); "
            "download it again."
        )
    log.debug("%s: unexpected keys %s", name, result.unexpected_keys[:5])
    return model.eval().requires_grad_(False).to(torch.device("cpu"))


def clip_config(keys: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    hidden = keys["text_model.final_layer_norm.weight"][0]
    layers = len({k.split(".")[3] for k in keys if k.startswith("text_model.encoder.layers.")})
    return {
        "hidden_size": hidden,
        "intermediate_size": keys["text_model.encoder.layers.0.mlp.fc1.weight"][0],
        "num_attention_heads": max(hidden // 64, 1),
        "num_hidden_layers": layers,
        "vocab_size": keys["text_model.embeddings.token_embedding.weight"][0],
        "max_position_embeddings": keys["text_model.embeddings.position_embedding.weight"][0],
        "hidden_act": "quick_gelu",
        "projection_dim": hidden,
    }


def t5_config(keys: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    buckets, heads = keys["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    layers = len({k.split(".")[2] for k in keys if k.startswith("encoder.block.")})
    embed = keys.get("shared.weight") or keys["encoder.embed_tokens.weight"]
    inner = keys["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
    return {
        "d_model": embed[1],
        "vocab_size": embed[0],
        "d_ff": keys["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
        "d_kv": inner // heads,
        "num_heads": heads,
        "num_layers": layers,
        "relative_attention_num_buckets": buckets,
        "feed_forward_proj": "gated-gelu",
        "is_gated_act": True,
        "dense_act_fn": "gelu_new",
        "tie_word_embeddings": False,
    }


def qwen_config(keys: dict[str, tuple[int, ...]], prefix: str) -> dict[str, Any]:
    head = keys[f"{prefix}layers.0.self_attn.q_norm.weight"][0]
    embed = keys[f"{prefix}embed_tokens.weight"]
    layers = len(
        {k.split(".")[1] for k in (k[len(prefix) :] for k in keys) if k.startswith("layers.")}
    )
    return {
        "hidden_size": embed[1],
        "vocab_size": embed[0],
        "intermediate_size": keys[f"{prefix}layers.0.mlp.gate_proj.weight"][0],
        "num_hidden_layers": layers,
        "head_dim": head,
        "num_attention_heads": keys[f"{prefix}layers.0.self_attn.q_proj.weight"][0] // head,
        "num_key_value_heads": keys[f"{prefix}layers.0.self_attn.k_proj.weight"][0] // head,
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    }


def load_text_encoder(component: Component, dtype: Any) -> Any:
    """The text encoder model of ``component`` in ``dtype`` (CPU)."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        Qwen3Config,
        Qwen3Model,
        T5Config,
        T5EncoderModel,
    )

    keys, metadata = read_header(component.path)
    state = load_state(component.path, dtype)
    config = embedded(metadata)
    if component.kind == "clip_l":
        model = _build(
            CLIPTextModel,
            CLIPTextConfig(**(config or clip_config(keys))),
            state,
            component.path.name,
        )
    elif component.kind == "t5":
        if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
            state["shared.weight"] = state["encoder.embed_tokens.weight"]
        model = _build(
            T5EncoderModel, T5Config(**(config or t5_config(keys))), state, component.path.name
        )
    else:
        prefix = "model." if any(k.startswith("model.layers.") for k in keys) else ""
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        state.pop("lm_head.weight", None)
        model = _build(
            Qwen3Model,
            Qwen3Config(**(config or qwen_config(keys, prefix))),
            state,
            component.path.name,
        )
    return model.to(dtype)


def load_tokenizer(component: Component, hub_repo: str | None, subfolder: str) -> Any:
    """The tokenizer for a text encoder file (see the module doc for the order)."""
    if component.kind == "clip_l":
        from backend.engine.tokenizer import load_clip_tokenizer

        return load_clip_tokenizer("endoftext")
    _, metadata = read_header(component.path)
    data = embedded(metadata, TOKENIZER_KEY)
    if data is not None:
        return _embedded_tokenizer(data)
    from transformers import AutoTokenizer

    beside = component.path.with_suffix("")
    for folder in (beside, component.path.parent / f"{beside.name}_tokenizer"):
        if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if hub_repo:
        try:
            from huggingface_hub import snapshot_download

            root = snapshot_download(
                hub_repo, local_files_only=True, allow_patterns=[f"{subfolder}/*"]
            )
            return AutoTokenizer.from_pretrained(str(Path(root) / subfolder), local_files_only=True)
        except Exception as exc:  # not cached: LocalEntryNotFoundError, OSError, ...
            log.info("no cached tokenizer %s/%s: %s", hub_repo, subfolder, exc)
    raise ModelLoadError(
        f"The tokenizer for {component.path.name} is missing: put its tokenizer files "
        f"(tokenizer.json, tokenizer_config.json) in a folder {beside.name}/ beside it, or "
        f"download {hub_repo or 'the model'} ({subfolder}/) into the Hugging Face cache."
    )


def _embedded_tokenizer(data: dict) -> Any:
    import transformers
    from tokenizers import Tokenizer

    settings = data["settings"]
    cls = getattr(transformers, settings["class"])
    tokenizer = cls(
        tokenizer_object=Tokenizer.from_str(data["tokenizer"]),
        model_max_length=settings["model_max_length"],
        **settings["special"],
    )
    if settings.get("additional_special_tokens"):
        tokenizer.add_special_tokens(
            {"additional_special_tokens": settings["additional_special_tokens"]}
        )
    if settings.get("chat_template"):
        tokenizer.chat_template = settings["chat_template"]
    return tokenizer


def flux_vae_config(channels: int = 16) -> dict[str, Any]:
    """The full-size Flux VAE (ae.safetensors), also Z-Image's."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": channels,
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "force_upcast": True,
        "act_fn": "silu",
        "mid_block_add_attention": True,
    }


def load_vae(component: Component, dtype: Any) -> Any:
    """A Flux-layout (``ae.safetensors``) or diffusers-layout 16-channel VAE file."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    keys, metadata = read_header(component.path)
    config = embedded(metadata) or flux_vae_config()
    state = load_state(component.path, dtype)
    for prefix in ("first_stage_model.", "vae."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if "decoder.up.0.block.0.conv1.weight" in state:  # original layout: convert
        state = convert_ldm_vae_checkpoint(state, config)
    return _build(lambda c: AutoencoderKL(**c), config, state, component.path.name).to(dtype)
