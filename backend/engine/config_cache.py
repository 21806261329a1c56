"""Config folders for diffusers' ``from_single_file``, written once into the config cache.

Our writer embeds a single file's configs in its metadata under ``CONFIG_KEY``
(``embedded_config``; how the tiny built-ins carry theirs). ``config_folder_for_embedded``
turns that JSON into a folder diffusers reads: model_index.json, each component's config and
the family's tokenizer files. ``_materialize`` writes any such folder once under its key (a
temp folder, then a rename), so a half-written folder is never used. Which folder a file gets
(embedded or shipped family configs) is decided in loader.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from backend.engine import families
from backend.engine.detect import CheckpointKind, kind_from_unet_config
from backend.engine.tokenizer import copy_tokenizer_files, default_cache_dir

CONFIG_KEY = "diffusion_layers.config"
COMPONENT_CLASSES = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
    "scheduler": ("diffusers", "EulerDiscreteScheduler"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "tokenizer_2": ("transformers", "CLIPTokenizer"),
}


def _write_tokenizers(folder: Path, family: str, index: dict[str, Any] | None = None) -> None:
    """The family's tokenizer folders (and their model_index.json entries)."""
    for encoder in families.get(family).text_encoders:
        if index is not None:
            index[encoder.tokenizer] = ["transformers", "CLIPTokenizer"]
        copy_tokenizer_files(encoder.pad, folder / encoder.tokenizer)


def embedded_config(family: str, components: dict[str, dict]) -> str:
    """The JSON our writer stores under CONFIG_KEY in a single file's metadata."""
    return json.dumps({"family": family, "components": components}, sort_keys=True)


def _config_cache_root() -> Path:
    return default_cache_dir().parent / "configs"


def _write_component_configs(folder: Path, family: str, components: dict[str, dict]) -> None:
    """model_index.json plus each component's config and the tokenizer files."""
    index: dict[str, Any] = {
        "_class_name": families.get(family).base_pipeline,
        "_diffusers_version": "0.39.0",
    }
    for name, config in components.items():
        library, class_name = COMPONENT_CLASSES[name]
        index[name] = [library, class_name]
        (folder / name).mkdir(parents=True, exist_ok=True)
        if name == "scheduler":
            data = dict(config, _class_name=class_name)
            (folder / name / "scheduler_config.json").write_text(json.dumps(data, indent=2))
        elif library == "transformers":
            data = dict(config, model_type="clip_text_model", architectures=[class_name])
            (folder / name / "config.json").write_text(json.dumps(data, indent=2))
        else:
            data = dict(config, _class_name=class_name)
            (folder / name / "config.json").write_text(json.dumps(data, indent=2))
    _write_tokenizers(folder, family, index)
    index.update(families.get(family).index_extra)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def _materialize(key: str, fill: Any) -> Path:
    """A cached config folder named ``key``, written once (temp folder, then rename)."""
    root = _config_cache_root()
    target = root / key
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cfg-", dir=root))
    try:
        fill(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def config_folder_for_embedded(text: str) -> tuple[Path, CheckpointKind]:
    """The config folder for a file's embedded config JSON."""
    data = json.loads(text)
    family, components = data["family"], data["components"]
    kind = kind_from_unet_config(components["unet"], "embedded config")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = _materialize(
        f"embedded-{digest}", lambda d: _write_component_configs(d, family, components)
    )
    return folder, kind
