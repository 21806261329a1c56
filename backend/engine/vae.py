"""VAEs: what a VAE file is (from its header), loading one, and the tiny test VAE.

``models_dir/vae/`` holds standalone VAEs (``vae-ft-mse-840000-ema-pruned.safetensors``,
``sdxl_vae.safetensors``, diffusers folders). SD1.5 and SDXL VAEs share one architecture, so
the family comes from the file's metadata, then its name (a family's ``pickle_name_hints``:
"xl" means SDXL), else the legacy family (SD1.5); see backend/engine/families.
A VAE with other than 4 latent channels (SD3, Flux) is listed with a ``problem`` and refused.

A checkpoint without ``first_stage_model.*`` weights runs with the family's VAE: the ``vae``
the artist picks, else the per-model default (``model_vaes`` setting), else an installed VAE of
its family (the family's ``default_vae_file`` first).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engine import families
from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

Header = dict[str, tuple[int, ...]]
VAE_PREFIXES = ("first_stage_model.", "vae.")
LATENT_CHANNELS = 4


@dataclass(frozen=True)
class VaeFacts:
    family: str | None  # a family id (backend/engine/families)
    problem: str | None = None  # why it cannot be used (a sentence), None when it can


def checkpoint_has_vae(keys: Header) -> bool:
    """Whether an original-layout checkpoint carries its VAE (``first_stage_model.*``)."""
    return any(key.startswith("first_stage_model.") for key in keys)


def _strip(keys: Header) -> Header:
    for prefix in VAE_PREFIXES:
        if any(key.startswith(prefix) for key in keys):
            return {k[len(prefix) :]: v for k, v in keys.items() if k.startswith(prefix)}
    return keys


def _family_from(metadata: dict[str, str], name: str) -> str:
    from backend.engine.loader import CONFIG_KEY

    embedded = metadata.get(CONFIG_KEY)
    if embedded:
        try:
            family = json.loads(embedded).get("family")
        except ValueError:
            family = None
        if family in families.ids():
            return family
    told = families.lora_family_from_metadata(metadata)
    if told is not None:
        return told.id
    architecture = " ".join(
        metadata.get(key, "") for key in ("modelspec.architecture", "ss_base_model_version")
    )
    if architecture.strip():
        return families.pickle_family(architecture).id
    return families.pickle_family(Path(name).name).id


def vae_facts(keys: Header, metadata: dict[str, str], name: str) -> VaeFacts:
    """Family and usability of a VAE from its safetensors header."""
    stripped = _strip(keys)
    conv_in = stripped.get("decoder.conv_in.weight")
    if conv_in is None or len(conv_in) != 4:
        from backend.engine.detect import describe_header

        return VaeFacts(
            None,
            f"The file {name!r} in the vae folder holds no VAE (no decoder weights): its "
            f"header holds {describe_header(keys)}.",
        )
    if conv_in[1] != LATENT_CHANNELS:
        return VaeFacts(
            None,
            f"The VAE {name!r} has {conv_in[1]} latent channels (an SD3 or Flux VAE); "
            f"{_runs()} models need a 4-channel VAE.",
        )
    return VaeFacts(_family_from(metadata, name))


def detect_vae(path: str | Path, name: str) -> VaeFacts:
    """``vae_facts`` of a .safetensors file or a diffusers VAE folder."""
    from backend.engine.detect import read_header

    path = Path(path)
    if path.is_dir():
        try:
            config = json.loads((path / "config.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"The VAE folder {name!r} has an unreadable config.json.") from exc
        channels = int(config.get("latent_channels", LATENT_CHANNELS))
        if channels != LATENT_CHANNELS:
            problem = f"The VAE {name!r} has {channels} latent channels; {_runs()} need 4."
            return VaeFacts(None, problem)
        factor = float(config.get("scaling_factor", 0.18215))
        by_factor = families.vae_family(factor)
        return VaeFacts(by_factor.id if by_factor is not None else _family_from({}, name))
    if path.suffix.lower() != ".safetensors":
        return VaeFacts(_family_from({}, name))  # a pickle: nothing to read without loading
    keys, metadata = read_header(path)
    return vae_facts(keys, metadata, name)


def _runs() -> str:
    return "/".join(family.label for family in families.FAMILIES)


def default_vae_file(family: str) -> str | None:
    """The VAE ``family``'s checkpoints are usually paired with (what to suggest installing)."""
    return families.get(family).default_vae_file if family in families.ids() else None


def missing_vae_sentence(model: str, family: str) -> str:
    """What to do when ``model`` has no VAE inside and none of its family is installed."""
    label = families.label(family)
    return (
        f"The model {model!r} has no VAE inside it. Add an {label} VAE file (for example "
        f"{default_vae_file(family) or 'a VAE file'}) to the models/vae/ folder, "
        "or choose a VAE in the request."
    )


def _config_folder(path: Path, family: str) -> Path:
    """The embedded tiny config when present, else the shipped full-size one of ``family``."""
    from backend.engine.detect import read_header
    from backend.engine.loader import CONFIG_KEY, CONFIGS_DIR, _materialize

    _, metadata = read_header(path)
    text = metadata.get(CONFIG_KEY)
    if not text:
        return CONFIGS_DIR / families.get(family).config_folder / "vae"
    config = json.loads(text)["components"]["vae"]
    import hashlib

    digest = hashlib.sha256(text.encode()).hexdigest()[:16]

    def fill(folder: Path) -> None:
        data = dict(config, _class_name="AutoencoderKL")
        (folder / "config.json").write_text(json.dumps(data, indent=2))
        (folder / "model_index.json").write_text("{}")

    return _materialize(f"vae-{digest}", fill)


def load_vae(path: str | Path, family: str, *, device: str, dtype: Any, name: str) -> Any:
    """A diffusers ``AutoencoderKL`` from a VAE file or folder, on ``device``."""
    from diffusers import AutoencoderKL

    path = Path(path)
    try:
        if path.is_dir():
            model = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype)
        elif path.suffix.lower() == ".safetensors":
            folder = _config_folder(path, family)
            model = AutoencoderKL.from_single_file(
                str(path), config=str(folder), local_files_only=True, torch_dtype=dtype
            )
        else:
            raise ModelLoadError(f"The VAE {name!r} is not a .safetensors file or a folder.")
    except ModelLoadError:
        raise
    except Exception as exc:  # diffusers/safetensors raise many kinds for damaged files
        log.exception("loading VAE %s failed", path)
        raise ModelLoadError(
            f"The VAE {name!r} could not be loaded: the file is damaged or not a VAE for "
            f"{families.label(family)} (details in the server log)."
        ) from exc
    return model if device == "cpu" else model.to(device)


def tiny_vae_file(family: str, target: Any, seed: int = 7) -> None:
    """Write a tiny standalone VAE for the tiny ``family`` models (``encoder.*``/``decoder.*``
    keys as distributed VAE files have them, its config embedded). Another seed than the
    built-in checkpoints' own VAE, so applying it visibly changes the picture."""
    import torch
    from diffusers import AutoencoderKL

    from backend.engine.checkpoint_format import vae_to_ldm
    from backend.engine.loader import CONFIG_KEY, embedded_config
    from backend.engine.tiny import _save_atomic, vae_config

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config(family))
    state = {
        key[len("first_stage_model.") :]: value.contiguous()
        for key, value in vae_to_ldm(vae).items()
    }
    metadata = {CONFIG_KEY: embedded_config(family, {"vae": vae_config(family)})}
    _save_atomic(state, metadata, Path(target))


def family_default_vae(inventory: Any, family: str) -> str | None:
    """The installed VAE a no-VAE checkpoint of ``family`` uses: the usual one
    (the family's ``default_vae_file``) when installed, else the first usable one of the family by name."""
    usable = [e for e in inventory.vaes if e.family == family and e.problem is None]
    usual = Path(default_vae_file(family) or "").stem
    for entry in usable:
        if Path(entry.name).name == usual:
            return entry.name
    return usable[0].name if usable else None


def choose_vae(
    inventory: Any, checkpoint: Any, requested: str | None, model_vaes: dict[str, str]
) -> str | None:
    """The VAE a job on ``checkpoint`` uses: the request's, else the per-model default
    (``model_vaes``), else None (the checkpoint's own), else -- for a checkpoint without one --
    its family's installed VAE (None when there is none: the caller refuses)."""
    name = requested or model_vaes.get(checkpoint.name)
    if name:
        return name
    return None if checkpoint.has_vae else family_default_vae(inventory, checkpoint.family)


class VaeCache:
    """Loaded VAEs by name (a small LRU): a VAE swap per job costs one load, once."""

    def __init__(self, device: str, dtype: Any, size: int = 2) -> None:
        from collections import OrderedDict

        self.device, self.dtype, self.size = device, dtype, size
        self._models: OrderedDict[str, Any] = OrderedDict()

    def get(self, name: str, path: str, family: str) -> Any:
        key = f"{family}:{name}"
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        model = load_vae(path, family, device=self.device, dtype=self.dtype, name=name)
        self._models[key] = model
        while len(self._models) > self.size:
            self._models.popitem(last=False)
        return model
