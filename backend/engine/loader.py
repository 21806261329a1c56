"""Load checkpoints and ControlNets from single files, diffusers folders or Hub ids, offline.

Single files use diffusers' ``from_single_file`` with a local config folder: the configs our own
writer embeds in the file's metadata ("diffusion_layers.config", how the tiny built-ins carry
theirs), else the shipped full-size family configs under ``backend/engine/configs``. Tokenizer
files are filled in from ``tokenizer.py``; the folders are written once into the config cache
(``config_cache.py``). Nothing is ever downloaded while loading a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.engine import families
from backend.engine.config_cache import CONFIG_KEY as CONFIG_KEY
from backend.engine.config_cache import _materialize as _materialize
from backend.engine.config_cache import _write_component_configs as _write_component_configs
from backend.engine.config_cache import _write_tokenizers, config_folder_for_embedded
from backend.engine.config_cache import embedded_config as embedded_config
from backend.engine.detect import (
    PICKLE_SUFFIXES,
    SUPPORTED,
    CheckpointKind,
    detect_checkpoint,
    detect_controlnet,
    kind_from_header,
    read_header,
)
from backend.engine.errors import EngineError, ModelLoadError, ModelNotFound, UnsafeModelFile
from backend.engine.prediction import apply_prediction, detect_prediction

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).parent / "configs"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    name: str
    family: str  # a family id (backend/engine/families)
    inpaint: bool
    pipe: Any  # the family's base pipeline (txt2img, shared components)
    native_resolution: int
    device: str
    dtype: torch.dtype
    approx_bytes: int
    own_vae: Any = None  # the VAE it was loaded with (its own, or its family's for no-VAE files)
    vae_name: str | None = None  # the VAE from vae/ swapped in for the current job, if any


def family_folder_name(family: str, inpaint: bool) -> str:
    """The shipped config folder of ``family`` (its inpaint one when ``inpaint``)."""
    spec = families.get(family)
    folder = spec.inpaint_config_folder if inpaint else spec.config_folder
    if folder is None:
        raise ModelLoadError(f"{spec.label} has no shipped {'inpaint ' if inpaint else ''}config.")
    return folder


def config_folder_for_family(kind: CheckpointKind) -> Path:
    """A cache copy of the shipped full-size configs with the tokenizer folders filled in."""
    source = CONFIGS_DIR / family_folder_name(kind.family, kind.inpaint)
    if not (source / "model_index.json").is_file():
        raise ModelLoadError(f"The shipped config {source} is missing; reinstall Diffusion Layers.")
    digest = hashlib.sha256((source / "unet" / "config.json").read_bytes()).hexdigest()[:12]

    def fill(folder: Path) -> None:
        shutil.copytree(source, folder, dirs_exist_ok=True)
        _write_tokenizers(folder, kind.family)

    return _materialize(f"{source.name}-{digest}", fill)


def _read_pickle(path: Path) -> tuple[str | None, dict[str, tuple[int, ...]]]:
    """A pickle checkpoint read with ``weights_only``: our embedded config (if any) and the
    tensor shapes of its state dict (A1111 files nest it under "state_dict")."""
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for damaged pickles
        log.warning("reading the pickle %s failed: %s", path, exc)
        raise ModelLoadError(
            f"{path.name} could not be read: it is damaged or was cut short (details in the "
            "server log)."
        ) from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name} holds no state dict.")
    value = data.get(CONFIG_KEY)
    state = data
    while isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    return (value if isinstance(value, str) else None), shapes


def _check_source_file(path: Path, allow_pickle: bool) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise UnsafeModelFile(
            f"{path.name} is a pickle file, which can run code when loaded. Use a .safetensors "
            "version, or enable 'allow pickle' in the server settings if you trust it."
        )
    if path.suffix.lower() not in PICKLE_SUFFIXES + (".safetensors",):
        raise ModelLoadError(f"{path.name}: unsupported model file type {path.suffix!r}.")


def _single_file_config(path: Path) -> tuple[Path, CheckpointKind, set[str]]:
    """The config folder and kind of a single file, and its state dict's key names."""
    if path.suffix.lower() == ".safetensors":
        keys, metadata = read_header(path)
        names = set(keys)
        text = metadata.get(CONFIG_KEY)
        if text is None:
            kind = detect_checkpoint(path)
            return config_folder_for_family(kind), kind, names
    else:
        text, shapes = _read_pickle(path)
        names = set(shapes)
        if text is None:
            kind = kind_from_header(shapes, path.name)
            return config_folder_for_family(kind), kind, names
    try:
        folder, kind = config_folder_for_embedded(text)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("embedded config of %s: %s", path, exc)
        raise ModelLoadError(f"{path.name} has a damaged embedded config.") from exc
    return folder, kind, names


def pipeline_class(family: str) -> Any:
    described = families.get(family)
    return described.pipeline_type(described.base_pipeline)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _load_pipe(
    source: str, allow_pickle: bool, dtype: torch.dtype, vae: Any = None
) -> tuple[Any, CheckpointKind]:
    """Step 1-3 of loading: find the kind and config, then build the pipeline on the CPU.
    ``vae``: a loaded VAE to use instead of the file's own (needed when it has none)."""
    path = Path(source).expanduser()
    extra: dict[str, Any] = {"torch_dtype": dtype}
    if vae is not None:
        extra["vae"] = vae
    if path.is_file() or path.suffix.lower() in PICKLE_SUFFIXES + (".safetensors",):
        if not path.is_file():
            raise ModelNotFound(f"Model file not found: {path}")
        _check_source_file(path, allow_pickle)
        folder, kind, names = _single_file_config(path)
        cls = pipeline_class(kind.family)
        extra.update(families.get(kind.family).load_kwargs)
        pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, **extra)
        # v-prediction from the file's marker keys or its sidecar YAML (prediction.py).
        apply_prediction(pipe, detect_prediction(path, names, pipe.scheduler.config))
        return pipe, kind
    if path.is_dir():
        kind = detect_checkpoint(path)
        extra.update(families.get(kind.family).load_kwargs)
        return pipeline_class(kind.family).from_pretrained(str(path), **extra), kind
    raise ModelNotFound(f"No model file, folder or Hub id {source!r}.")


HUB_PATTERNS = ["*.json", "*.txt", "*/*.safetensors"]  # configs, tokenizers, safe weights


def _hub_folder(repo_id: str) -> str:
    """The local snapshot of ``repo_id``: the HF cache, else a download unless offline."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # LocalEntryNotFoundError and friends
        if _offline():
            raise ModelNotFound(
                f"Model {repo_id!r} is not in the Hugging Face cache and the server is offline "
                "(HF_HUB_OFFLINE): download it first or put a file in the models folder."
            ) from exc
    try:
        return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # network errors, missing or gated repositories
        log.warning("downloading %s failed: %s", repo_id, exc)
        raise ModelNotFound(
            f"Model {repo_id!r} could not be downloaded (no network, a wrong name, or a gated "
            "repository that needs HF_TOKEN; details in the server log)."
        ) from exc


def _local_source(source: str) -> str:
    """``source`` itself when it is a path; a Hub id's local snapshot folder otherwise (the HF
    cache, else a download unless offline; ModelNotFound when neither)."""
    path = Path(source).expanduser()
    if path.exists() or path.suffix.lower() in PICKLE_SUFFIXES + (".safetensors", ".gguf"):
        return source
    return _hub_folder(source) if HUB_ID.match(source) else source


def _check_complete(modules: list[Any], name: str) -> None:
    for module in modules:
        if module is None:
            continue
        missing = [key for key, value in module.named_parameters() if value.is_meta]
        if missing:
            raise ModelLoadError(
                f"{name} is incomplete: {type(module).__name__} lacks {len(missing)} weights "
                f"(e.g. {missing[0]}). The file may be truncated or of another model family."
            )


def approx_bytes(modules: list[Any]) -> int:
    total = 0
    for module in modules:
        if module is None or not hasattr(module, "parameters"):
            continue
        total += sum(p.numel() * p.element_size() for p in module.parameters())
        total += sum(b.numel() * b.element_size() for b in module.buffers())
    return total


def _family_load_hook(source: str) -> Any:
    """The ``Family.load`` hook of the family ``source`` belongs to, if it has one."""
    path = Path(source).expanduser()
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() not in PICKLE_SUFFIXES)):
        return None
    return families.get(detect_checkpoint(path).family).load


def load_checkpoint(
    source: str,
    *,
    device: str,
    dtype: torch.dtype,
    allow_pickle: bool = False,
    name: str | None = None,
    vae: Any = None,
    models_dir: str | None = None,
) -> LoadedModel:
    """Load a checkpoint of a registered family (file, diffusers folder or cached Hub id) onto ``device``
    (``vae``: a loaded VAE to use instead of the file's own, for files without one)."""
    display = name or Path(source).stem or source
    source = _local_source(source)  # a Hub id: its snapshot in the HF cache (every family)
    hook = _family_load_hook(source)
    if hook is not None:  # a transformer family (Flux.1, Z-Image) loads its own way
        try:
            return hook(
                source, device=device, dtype=dtype, name=display, vae=vae, models_dir=models_dir
            )
        except EngineError:
            raise
        except Exception as exc:  # diffusers/safetensors/gguf raise many kinds
            log.exception("loading %s failed", source)
            raise ModelLoadError(
                f"Could not load the model {display!r} ({Path(source).name}): the file is "
                "damaged or incomplete (details in the server log)."
            ) from exc
    # 1. Build on the CPU from the right config (errors name the file).
    try:
        pipe, kind = _load_pipe(source, allow_pickle, dtype, vae)
        # 2. Every weight must have come from the file (a partial file leaves "meta" tensors).
        modules = [pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)]
        _check_complete(modules, display)
    except EngineError:
        raise
    except Exception as exc:  # diffusers/safetensors/torch raise many kinds on damaged files
        log.exception("loading %s failed", source)
        raise ModelLoadError(
            f"Could not load the model {display!r} ({Path(source).name}): the file is damaged "
            f"or not a checkpoint of {SUPPORTED} (details in the server log)."
        ) from exc
    # 3. Quiet progress bars, then move to the device.
    pipe.set_progress_bar_config(disable=True)
    if device != "cpu":
        pipe = pipe.to(device)
    # 4. Describe it.
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return LoadedModel(
        name=display,
        family=kind.family,
        inpaint=kind.inpaint,
        pipe=pipe,
        native_resolution=int(pipe.unet.config.sample_size) * scale,
        device=device,
        dtype=dtype,
        approx_bytes=approx_bytes(modules),
        own_vae=pipe.vae,
    )


def load_controlnet(
    source: str,
    *,
    device: str,
    dtype: torch.dtype,
    allow_pickle: bool = False,
    family: str | None = None,
) -> Any:
    """Load a ControlNet (single file in the original or diffusers layout, or a folder);
    ``family``: the family it was detected as (transformer families load their own class)."""
    from diffusers import ControlNetModel

    path = Path(source).expanduser()
    spec = families.get(family) if family else None
    try:
        if spec is not None and spec.controlnet_class != "ControlNetModel" and path.exists():
            from backend.engine.families.dit_controlnet import load_dit_controlnet

            if path.is_file():
                _check_source_file(path, allow_pickle)
            model = load_dit_controlnet(path, spec, dtype)
        elif path.is_dir():
            model = ControlNetModel.from_pretrained(str(path), torch_dtype=dtype)
        elif path.is_file():
            _check_source_file(path, allow_pickle)
            model = ControlNetModel.from_single_file(
                str(path),
                config=str(_controlnet_config_folder(path)),
                local_files_only=True,
                torch_dtype=dtype,
            )
        else:
            raise ModelNotFound(f"ControlNet not found: {source}")
        _check_complete([model], path.name)
    except EngineError:
        raise
    except Exception as exc:  # damaged files raise many kinds
        log.exception("loading ControlNet %s failed", source)
        raise ModelLoadError(
            f"Could not load the ControlNet {path.name}: the file is damaged or not a "
            f"ControlNet for {SUPPORTED} (details in the server log)."
        ) from exc
    return model if device == "cpu" else model.to(device)


def _controlnet_config_folder(path: Path) -> Path:
    """The embedded ControlNet config when present, else the shipped one for its family."""
    if path.suffix.lower() == ".safetensors":
        _, metadata = read_header(path)
        text = metadata.get(CONFIG_KEY)
    else:
        text, _ = _read_pickle(path)
    if text:
        config = json.loads(text)["components"]["controlnet"]
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]

        def fill(folder: Path) -> None:
            data = dict(config, _class_name="ControlNetModel")
            (folder / "config.json").write_text(json.dumps(data, indent=2))
            (folder / "model_index.json").write_text("{}")

        return _materialize(f"controlnet-{digest}", fill)
    spec = families.get(detect_controlnet(path))
    if spec.controlnet_config_folder is None:
        raise ModelLoadError(f"{path.name}: {spec.label} ControlNets have no shipped config.")
    return CONFIGS_DIR / spec.controlnet_config_folder
