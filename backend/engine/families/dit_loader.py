"""Load a Flux.1 or Z-Image pipeline: a transformer file plus its text encoders and VAE, or a
diffusers folder / cached Hub id. Offline; nothing is downloaded while loading.

``DitSpec`` says what a family's pipeline is made of (family modules build one); ``load``
returns the pipeline on the CPU in the compute dtype. Transformer files are
``.safetensors`` (bf16/fp16/fp32, or fp8 upcast to the compute dtype) or GGUF (kept quantised,
dequantised per layer by diffusers' GGUF support). ``place`` then puts it on the device by the
family's memory policy (memory.py).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.engine.errors import ModelLoadError, ModelNotFound
from backend.engine.families import dit_components as parts

log = logging.getLogger(__name__)


def _fp8_dtypes() -> tuple[Any, ...]:
    import torch

    return tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


@dataclass(frozen=True)
class TextSlot:
    """One text encoder of a pipeline: the component/tokenizer names, the file kind, how to
    read the width the transformer wants from its config, and what to tell a user who lacks
    it."""

    component: str  # "text_encoder" | "text_encoder_2"
    tokenizer: str
    kind: str  # "clip_l" | "t5" | "qwen3"
    width_key: str  # transformer config key holding the encoder's width
    file_hint: str  # "clip_l.safetensors"
    hub_subfolder: str  # the tokenizer's folder in the family's Hub repo


@dataclass(frozen=True)
class DitSpec:
    label: str  # "Flux.1"
    transformer_class: str  # diffusers class
    pipeline_class: Callable[[dict[str, Any]], str]  # transformer config -> pipeline class
    text: tuple[TextSlot, ...]
    hub_repo: str  # where tokenizers are looked up in the HF cache
    #: original-layout state -> diffusers keys (None: diffusers' own single-file converter)
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None
    config_from_header: Callable[[dict[str, tuple[int, ...]]], dict[str, Any]]
    scheduler: Callable[[dict[str, Any]], dict[str, Any]]  # transformer config -> scheduler
    vae_hint: str = "ae.safetensors"
    extra: dict[str, Any] = field(default_factory=dict)


def transformer_config(path: Path, spec: DitSpec) -> dict[str, Any]:
    keys, metadata = parts.read_header(path)
    return parts.embedded(metadata) or spec.config_from_header(keys)


def load_transformer(path: Path, spec: DitSpec, dtype: Any) -> tuple[Any, dict[str, Any]]:
    """The transformer of a single file (safetensors or GGUF) and its config."""
    import diffusers

    config = transformer_config(path, spec)
    gguf = path.suffix.lower() == ".gguf"
    state = parts.load_state(path, None)
    fp8 = any(v.dtype in _fp8_dtypes() for v in state.values()) if not gguf else False
    if not gguf:  # fp8/bf16/fp32 weights upcast (or cast) to the compute dtype
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    if spec.convert is not None:
        state = spec.convert(state)
    cls = getattr(diffusers, spec.transformer_class)
    extra: dict[str, Any] = {"torch_dtype": dtype}
    if gguf:
        extra["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    with tempfile.TemporaryDirectory(prefix="dl-dit-") as folder:
        target = Path(folder) / "transformer"
        target.mkdir()
        data = dict(config, _class_name=spec.transformer_class)
        (target / "config.json").write_text(json.dumps(data))
        model = cls.from_single_file(
            state, config=folder, subfolder="transformer", local_files_only=True, **extra
        )
    model._dl_fp8 = fp8  # place() keeps fp8 storage on a GPU (dit_family.py)
    return model.eval(), config


def _missing_text(slot: TextSlot, spec: DitSpec, name: str, width: int) -> str:
    return (
        f"{spec.label} model {name!r} needs its {slot.kind.replace('_', '-').upper()} text "
        f"encoder (width {width}): put {slot.file_hint} in the models folder's "
        "text_encoders/ folder."
    )


def load_from_file(
    path: Path, spec: DitSpec, *, dtype: Any, models_dir: str | None, name: str, vae: Any = None
) -> Any:
    """A pipeline from a transformer file plus the text encoders and VAE in ``models_dir``."""
    import diffusers

    components = parts.scan(models_dir)
    config = transformer_config(path, spec)
    # 1. Check every companion file exists before loading anything big.
    chosen = {
        slot.component: parts.pick(
            components,
            slot.kind,
            int(config[slot.width_key]),
            _missing_text(slot, spec, name, int(config[slot.width_key])),
        )
        for slot in spec.text
    }
    vae_file = None
    if vae is None:
        vae_file = parts.pick(
            components,
            "vae16",
            None,
            f"{spec.label} model {name!r} needs the Flux VAE: put {spec.vae_hint} in the "
            "models folder's vae/ folder.",
        )
    # 2. Load them.
    transformer, config = load_transformer(path, spec, dtype)
    modules: dict[str, Any] = {"transformer": transformer}
    for slot in spec.text:
        component = chosen[slot.component]
        modules[slot.component] = parts.load_text_encoder(component, dtype)
        modules[slot.tokenizer] = parts.load_tokenizer(component, spec.hub_repo, slot.hub_subfolder)
    modules["vae"] = vae if vae is not None else parts.load_vae(vae_file, dtype)  # type: ignore[arg-type]
    modules["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler(**spec.scheduler(config))
    cls = getattr(diffusers, spec.pipeline_class(config))
    pipe = cls(**modules)
    pipe.set_progress_bar_config(disable=True)
    pipe._dl_native_size = config.get("_dl_native_size")  # the tiny models' 64 px
    return pipe


def load_from_folder(folder: Path, spec: DitSpec, *, dtype: Any) -> Any:
    """A diffusers folder (model_index.json) of this family."""
    import diffusers

    config = json.loads((folder / "transformer" / "config.json").read_text("utf-8"))
    cls = getattr(diffusers, spec.pipeline_class(config))
    pipe = cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe._dl_native_size = config.get("dl_native_size")  # tiny folders (bench --tiny): 64 px
    return pipe


def load(
    source: str, spec: DitSpec, *, dtype: Any, models_dir: str | None, name: str, vae: Any = None
) -> Any:
    """The pipeline of ``source`` (a transformer file, a diffusers folder or a cached Hub id)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return load_from_folder(path, spec, dtype=dtype)
    if path.is_file():
        return load_from_file(path, spec, dtype=dtype, models_dir=models_dir, name=name, vae=vae)
    if "/" in source and not path.suffix:
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(source, local_files_only=True)
        except Exception as exc:  # not in the cache
            raise ModelNotFound(
                f"Model {source!r} is not in the Hugging Face cache: download it first or put "
                "its files in the models folder."
            ) from exc
        return load_from_folder(Path(folder), spec, dtype=dtype)
    raise ModelLoadError(f"Model file not found: {source}")
