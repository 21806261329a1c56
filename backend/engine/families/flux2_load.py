"""Load a FLUX.2 klein pipeline offline: a transformer file (bf16/fp8 safetensors or GGUF, BFL
layout, optionally under ``model.diffusion_model.``) with its Qwen3 text encoder from
``models_dir/text_encoders/`` (or ``clip/``) and the FLUX.2 VAE from ``models_dir/vae/`` as
ComfyUI users keep them; or a diffusers folder / cached Hub id (``model_index.json`` says
``is_distilled``).

Companion files are told apart by their headers (never their names): a Qwen3 encoder whose
width is a third of the transformer's ``joint_attention_dim`` (klein stacks three of its hidden
states), a VAE whose decoder takes 32 latent channels. A missing one is a sentence naming the
file to put where. Single files carry no distilled/base flag: they load as the distilled model
(klein's release; docs/engine.md "FLUX.2 klein").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from backend.engine.errors import ModelLoadError, ModelNotFound
from backend.engine.families import dit_components as parts
from backend.engine.families import flux2_pipes
from backend.engine.families.dit_loader import DitSpec, load_transformer, transformer_config

log = logging.getLogger(__name__)

HUB_REPO = "black-forest-labs/FLUX.2-klein-4B"
TEXT_HINT = "qwen_3_4b.safetensors (FLUX.2 klein 4B; qwen_3_8b for 9B)"
VAE_HINT = "flux2-vae.safetensors"
VAE_PREFIXES = ("", "vae.", "first_stage_model.")


def find_vae(models_dir: str | Path | None) -> Path | None:
    """The first 32-latent-channel (FLUX.2) VAE file under ``models_dir/vae/``."""
    if not models_dir:
        return None
    root = Path(models_dir) / parts.VAE_FOLDER
    if not root.is_dir():
        return None
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in parts.SUFFIXES):
        try:
            keys, _ = parts.read_header(path)
        except ModelLoadError as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        for prefix in VAE_PREFIXES:
            conv = keys.get(f"{prefix}decoder.conv_in.weight")
            if conv is not None and len(conv) == 4 and conv[1] == 32:
                return path
    return None


def full_vae_config() -> dict[str, Any]:
    """The full-size FLUX.2 VAE (black-forest-labs/FLUX.2-klein-4B, vae/config.json)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 32,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "use_quant_conv": True,
        "use_post_quant_conv": True,
        "mid_block_add_attention": True,
        "batch_norm_eps": 1e-4,
        "batch_norm_momentum": 0.1,
        "patch_size": [2, 2],
    }


def load_vae(path: Path, dtype: Any) -> Any:
    """An AutoencoderKLFlux2 from a file in the original layout (``encoder.down.*``,
    ``quant_conv``, ``bn.*``) or the diffusers layout (``encoder.down_blocks.*``)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    _keys, metadata = parts.read_header(path)
    config = parts.embedded(metadata) or full_vae_config()
    state = parts.load_state(path, dtype)
    for prefix in VAE_PREFIXES[1:]:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    for inner, outer in (
        ("encoder.quant_conv.", "quant_conv."),
        ("decoder.post_quant_conv.", "post_quant_conv."),
    ):
        for key in [k for k in state if k.startswith(inner)]:
            state[outer + key[len(inner) :]] = state.pop(key)
    if "decoder.up.0.block.0.conv1.weight" in state:  # original layout
        bn = {k: v for k, v in state.items() if k.startswith("bn.")}
        state = {**convert_ldm_vae_checkpoint(state, config), **bn}
    with init_empty_weights(include_buffers=False):
        vae = AutoencoderKLFlux2(**config)
    vae.load_state_dict(state, strict=False, assign=True)
    missing = [k for k, v in [*vae.named_parameters(), *vae.named_buffers()] if v.is_meta]
    if missing:
        raise ModelLoadError(
            f"{path.name} is incomplete: it lacks {len(missing)} weights (e.g. {missing[0]}); "
            "download it again."
        )
    return vae.eval().requires_grad_(False).to(torch.device("cpu"), dtype)


def _missing_text(name: str, width: int) -> str:
    return (
        f"FLUX.2 klein model {name!r} needs its Qwen3 text encoder (width {width}): put "
        f"{TEXT_HINT} in the models folder's text_encoders/ folder."
    )


def _missing_vae(name: str) -> str:
    return (
        f"FLUX.2 klein model {name!r} needs the FLUX.2 VAE: put {VAE_HINT} in the models "
        "folder's vae/ folder."
    )


def load_from_file(
    path: Path, spec: DitSpec, *, dtype: Any, models_dir: str | None, name: str
) -> Any:
    """The pipeline of a transformer file plus its companions in ``models_dir``."""
    import diffusers

    from backend.engine.families.tiny_flux2 import SCHEDULER

    config = transformer_config(path, spec)
    # 1. Every companion file exists before anything big is loaded.
    width = int(config["joint_attention_dim"]) // 3
    text = parts.pick(parts.scan(models_dir), "qwen3", width, _missing_text(name, width))
    vae_path = find_vae(models_dir)
    if vae_path is None:
        raise ModelLoadError(_missing_vae(name))
    # 2. Load them.
    transformer, config = load_transformer(path, spec, dtype)
    pipe = flux2_pipes.pipeline_class("DLFlux2KleinPipeline")(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        vae=load_vae(vae_path, dtype),
        text_encoder=parts.load_text_encoder(text, dtype),
        tokenizer=parts.load_tokenizer(text, HUB_REPO, "tokenizer"),
        transformer=transformer,
        is_distilled=True,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe._dl_native_size = config.get("_dl_native_size")  # the tiny models' 64 px
    return pipe


def load_from_folder(folder: Path, *, dtype: Any) -> Any:
    """A diffusers folder (model_index.json of a Flux2KleinPipeline)."""
    import json

    config = json.loads((folder / "transformer" / "config.json").read_text("utf-8"))
    cls = flux2_pipes.pipeline_class("DLFlux2KleinPipeline")
    pipe = cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe._dl_native_size = config.get("dl_native_size")
    return pipe


def load(source: str, spec: DitSpec, *, dtype: Any, models_dir: str | None, name: str) -> Any:
    """The pipeline of ``source``: a transformer file, a diffusers folder or a cached Hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return load_from_folder(path, dtype=dtype)
    if path.is_file():
        return load_from_file(path, spec, dtype=dtype, models_dir=models_dir, name=name)
    if "/" in source and not path.suffix:
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(source, local_files_only=True)
        except Exception as exc:  # not in the cache
            raise ModelNotFound(
                f"Model {source!r} is not in the Hugging Face cache: download it first or put "
                "its files in the models folder."
            ) from exc
        return load_from_folder(Path(folder), dtype=dtype)
    raise ModelLoadError(f"Model file not found: {source}")


def make_load_hook(spec: DitSpec, family_id: str, native: int) -> Any:
    """The ``Family.load`` hook: dit_family.make_load_hook with this module's loader (a job's
    VAE override does not apply: klein needs the FLUX.2 VAE it finds)."""
    from backend.engine.families import dit_family

    def build(source: str, spec: DitSpec, *, vae: Any = None, **options: Any) -> Any:
        return load(source, spec, **options)

    return dit_family.make_load_hook(spec, family_id, native, loader=build)
