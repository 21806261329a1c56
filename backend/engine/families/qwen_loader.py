"""Load a Qwen-Image pipeline (base, Edit, Edit-Plus, Layered) offline: a transformer file
plus the Qwen2.5-VL text encoder and the Qwen-Image VAE from the models folder (ComfyUI
layout: ``text_encoders/`` or ``clip/``, ``vae/``), or a diffusers folder / cached Hub id.

Companion files are told apart by their header, never their name: a Qwen2.5-VL text encoder
holds ``visual.blocks.*`` and ``model.layers.*.self_attn.q_proj.bias`` (its width is
``model.norm.weight``); a Qwen-Image VAE holds 5-D (causal 3-D) convolutions, in the diffusers
layout (``encoder.conv_in.weight``) or the Wan layout ComfyUI ships (``encoder.conv1.weight``),
with 3 input channels (RGB) or 4 (Qwen-Image-Layered's RGBA VAE). The tokenizer and the
image processor come from the text encoder file's metadata (tiny models), a folder beside it,
or the Hugging Face cache of Qwen/Qwen-Image-Edit. A missing file is a sentence naming what
to put where.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from backend.engine.errors import ModelLoadError, ModelNotFound
from backend.engine.families import dit_components as parts
from backend.engine.families import tiny_qwen
from backend.engine.families.dit_loader import DitSpec, load_transformer

log = logging.getLogger(__name__)

HUB_REPO = "Qwen/Qwen-Image-Edit"
TEXT_HINT = "qwen_2.5_vl_7b.safetensors (or qwen_2.5_vl_7b_fp8_scaled.safetensors)"
VAE_HINT = {False: "qwen_image_vae.safetensors", True: "qwen_image_layered_vae.safetensors"}
#: Qwen2.5-VL-7B-Instruct, for text encoder files that carry no config
QWEN25VL_7B: dict[str, Any] = {
    "text_config": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "out_hidden_size": 3584,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": False,
}


def classify(keys: dict[str, tuple[int, ...]]) -> tuple[str, int] | None:
    """("qwen25vl", width) or ("qwen_vae", input channels) from a header; None otherwise."""
    for prefix in ("model.", "model.language_model."):
        norm = keys.get(prefix + "norm.weight")
        if norm and f"{prefix}layers.0.self_attn.q_proj.bias" in keys:
            if any(k.startswith(("visual.", "model.visual.")) for k in keys):
                return "qwen25vl", norm[0]
    for conv in ("encoder.conv_in.weight", "encoder.conv1.weight"):
        shape = keys.get(conv)
        if shape is not None and len(shape) == 5:
            return "qwen_vae", shape[1]
    return None


def scan(models_dir: str | Path | None) -> list[parts.Component]:
    """Every Qwen2.5-VL text encoder and Qwen-Image VAE file under the models folder."""
    found: list[parts.Component] = []
    if not models_dir:
        return found
    for folder in (*parts.TEXT_FOLDERS, parts.VAE_FOLDER):
        root = Path(models_dir) / folder
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in parts.SUFFIXES):
            try:
                kind = classify(parts.read_header(path)[0])
            except ModelLoadError as exc:
                log.warning("skipping %s: %s", path, exc)
                continue
            if kind is not None:
                found.append(parts.Component(kind[0], kind[1], path))
    return found


def _unscaled(state: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's ``*_fp8_scaled`` files: each fp8 weight times its ``scale_weight``."""
    out = {}
    for key, value in state.items():
        if key.endswith((".scale_weight", ".scale_input")) or key == "scaled_fp8":
            continue
        scale = (
            state.get(key[: -len("weight")] + "scale_weight") if key.endswith("weight") else None
        )
        out[key] = value * scale.to(value.dtype) if scale is not None else value
    return out


def text_state(state: dict[str, Any]) -> dict[str, Any]:
    """Original-layout keys (``model.layers``, ``visual``) -> transformers 5's nesting."""
    out = {}
    for key, value in state.items():
        if key.startswith("model.") and not key.startswith(
            ("model.language_model.", "model.visual.")
        ):
            key = "model.language_model." + key[len("model.") :]
        elif key.startswith("visual."):
            key = "model." + key
        out[key] = value
    return out


def load_text_encoder(component: parts.Component, dtype: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _, metadata = parts.read_header(component.path)
    config = parts.embedded(metadata) or QWEN25VL_7B
    state = text_state(_unscaled(parts.load_state(component.path, dtype)))
    embed = state.get("model.language_model.embed_tokens.weight")
    if "lm_head.weight" not in state and embed is not None:
        # text-encoder-only files may leave the LM head out; it only writes Layered's
        # captions (empty prompt), so the embedding stands in for it (a tied head)
        state["lm_head.weight"] = embed
    model = parts._build(
        Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLConfig(**config), state, component.path.name
    )
    return model.to(dtype)


def load_tokenizer_and_processor(component: parts.Component) -> tuple[Any, Any]:
    """(tokenizer, processor) for a text encoder file (see the module doc for the order)."""
    _, metadata = parts.read_header(component.path)
    data = parts.embedded(metadata, parts.TOKENIZER_KEY)
    if data is not None:
        tokenizer = parts._embedded_tokenizer(data)
        pixels = parts.embedded(metadata, tiny_qwen.PROCESSOR_KEY)
        return tokenizer, tiny_qwen.build_processor(tokenizer, pixels)
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    beside = component.path.with_suffix("")
    roots = [beside, component.path.parent / f"{beside.name}_tokenizer"]
    try:
        from huggingface_hub import snapshot_download

        cached = snapshot_download(
            HUB_REPO, local_files_only=True, allow_patterns=["tokenizer/*", "processor/*"]
        )
        roots.append(Path(cached))
    except Exception as exc:  # not cached: LocalEntryNotFoundError, OSError, ...
        log.info("no cached %s tokenizer: %s", HUB_REPO, exc)
    for root in roots:
        for tok_dir, proc_dir in ((root / "tokenizer", root / "processor"), (root, root)):
            if (tok_dir / "tokenizer_config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
                image = Qwen2VLImageProcessorPil.from_pretrained(
                    str(proc_dir), local_files_only=True
                )
                return tokenizer, tiny_qwen.image_processor_class()(image, tokenizer)
    raise ModelLoadError(
        f"The tokenizer for {component.path.name} is missing: put the tokenizer/ and "
        f"processor/ folders of {HUB_REPO} in a folder {beside.name}/ beside it, or download "
        f"{HUB_REPO} (tokenizer/, processor/) into the Hugging Face cache."
    )


def _folder_processor(folder: Path) -> Any:
    """The image processor of a diffusers folder's ``processor/`` with its ``tokenizer/``."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    image = Qwen2VLImageProcessorPil.from_pretrained(
        str(folder / "processor"), local_files_only=True
    )
    return tiny_qwen.image_processor_class()(image, tokenizer)


def load_vae(component: parts.Component, dtype: Any) -> Any:
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    _, metadata = parts.read_header(component.path)
    config = parts.embedded(metadata) or {"input_channels": component.width}
    state = parts.load_state(component.path, dtype)
    if "encoder.conv1.weight" in state:  # the Wan layout ComfyUI ships
        state = convert_wan_vae_to_diffusers(state)
    model = parts._build(lambda c: AutoencoderKLQwenImage(**c), config, state, component.path.name)
    return model.to(dtype)


def edit_2511(metadata: dict[str, str]) -> bool:
    """Whether a file's metadata names Qwen-Image-Edit-2511 (``zero_cond_t``: the input
    images' tokens are modulated as at time 0), which its tensors cannot show."""
    text = " ".join(metadata.get(k, "") for k in ("modelspec.architecture", "modelspec.title"))
    return "2511" in text and "edit" in text.lower()


def zero_cond_t(transformer: Any) -> None:
    """Switch on ``zero_cond_t`` (a config flag without weights) in a loaded transformer."""
    transformer.register_to_config(zero_cond_t=True)
    transformer.zero_cond_t = True
    for block in transformer.transformer_blocks:
        block.zero_cond_t = True


def load_from_file(
    path: Path, spec: DitSpec, *, dtype: Any, models_dir: str | None, name: str, vae: Any = None
) -> Any:
    """The pipeline of a transformer file plus the text encoder and VAE in ``models_dir``."""
    import diffusers

    from backend.engine.families.dit_loader import transformer_config

    components = scan(models_dir)
    config = transformer_config(path, spec)
    width = int(config.get("joint_attention_dim", 3584))
    rgba = bool(config.get("use_additional_t_cond", False))  # Layered decodes RGBA
    # 1. Check the companion files exist before loading anything big.
    text = parts.pick(
        components,
        "qwen25vl",
        width,
        f"{spec.label} model {name!r} needs its Qwen2.5-VL text encoder (width {width}): put "
        f"{TEXT_HINT} in the models folder's text_encoders/ folder.",
    )
    if vae is None or rgba:
        vae_file = parts.pick(
            components,
            "qwen_vae",
            4 if rgba else 3,
            f"{spec.label} model {name!r} needs the {'RGBA ' if rgba else ''}Qwen-Image VAE: "
            f"put {VAE_HINT[rgba]} in the models folder's vae/ folder.",
        )
        vae = load_vae(vae_file, dtype)
    # 2. Load them.
    transformer, config = load_transformer(path, spec, dtype)
    if edit_2511(parts.read_header(path)[1]):
        zero_cond_t(transformer)
    tokenizer, processor = load_tokenizer_and_processor(text)
    modules: dict[str, Any] = {
        "transformer": transformer,
        "text_encoder": load_text_encoder(text, dtype),
        "tokenizer": tokenizer,
        "vae": vae,
        "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(**spec.scheduler(config)),
    }
    cls = getattr(diffusers, spec.pipeline_class(config))
    if "processor" in cls.__init__.__code__.co_varnames:
        modules["processor"] = processor
    pipe = cls(**modules)
    pipe.set_progress_bar_config(disable=True)
    pipe._dl_native_size = config.get("_dl_native_size")  # the tiny models' 64 px
    return pipe


def load(
    source: str, spec: DitSpec, *, dtype: Any, models_dir: str | None, name: str, vae: Any = None
) -> Any:
    """The pipeline of ``source`` (a transformer file, a diffusers folder or a cached Hub id)."""
    path = Path(source).expanduser()
    if path.is_file():
        return load_from_file(path, spec, dtype=dtype, models_dir=models_dir, name=name, vae=vae)
    if not path.is_dir() and "/" in source and not path.suffix:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(source, local_files_only=True))
        except Exception as exc:  # not in the cache
            raise ModelNotFound(
                f"Model {source!r} is not in the Hugging Face cache: download it first or put "
                "its files in the models folder."
            ) from exc
    if not path.is_dir():
        raise ModelLoadError(f"Model file not found: {source}")
    import diffusers

    index = json.loads((path / "model_index.json").read_text("utf-8"))
    cls = getattr(diffusers, str(index.get("_class_name", "QwenImagePipeline")))
    # components saved as None (e.g. a Layered folder without its captioning processor) are
    # passed as None, which from_pretrained otherwise refuses
    extra: dict[str, Any] = {k: None for k, v in index.items() if v == [None, None]}
    if index.get("processor", [None, None]) != [None, None]:
        extra["processor"] = _folder_processor(path)  # ours: without torchvision (module doc)
    pipe = cls.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    config = json.loads((path / "transformer" / "config.json").read_text("utf-8"))
    pipe._dl_native_size = config.get("dl_native_size")
    return pipe
