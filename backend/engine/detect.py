"""What a model file is, from its safetensors header only (names and shapes, no tensor data).

``detect_checkpoint`` asks the family registry (``backend/engine/families``) which family a
header belongs to and tells regular from 9-channel inpaint, and refuses families we do not run
(SD2.x, SDXL refiner, SD3, ...) with a message the artist can act on. Diffusers folders are read
from their ``config.json`` files instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from backend.engine import families
from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

Header = dict[str, tuple[int, ...]]
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
UNET = "model.diffusion_model."


def supported() -> str:
    """The families we run, for refusals: "SDXL and SD1.5 (regular and inpaint)"."""
    labels = [family.label for family in families.FAMILIES]
    joined = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
    return joined + " (regular and inpaint)"


SUPPORTED = supported()


@dataclass(frozen=True)
class CheckpointKind:
    family: str  # a family id from the registry (families.ids())
    inpaint: bool


def read_header(path: str | Path) -> tuple[Header, dict[str, str]]:
    """Tensor names -> shapes, and the metadata, of a .safetensors file (no tensor data read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Model file not found: {path}")
    if path.suffix.lower() == ".gguf":
        from backend.engine.families.dit_components import read_gguf_header

        return read_gguf_header(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError kinds
        log.warning("reading the header of %s failed: %s", path, exc)
        raise ModelLoadError(
            f"{path.name} is not a readable .safetensors file: it is damaged or was cut short "
            "(download it again)."
        ) from exc
    return shapes, metadata


def _refuse_other_families(keys: Header, name: str) -> None:
    """Raise a clear ModelLoadError for the model families we recognise but do not run."""
    checks = (
        (lambda k: any("joint_blocks." in key for key in k), "Stable Diffusion 3"),
        (
            lambda k: any(key.endswith("single_stream_modulation.lin.weight") for key in k),
            "FLUX.2 (dev or another FLUX.2 model than klein)",
        ),
        (lambda k: any("double_blocks." in key for key in k), "Flux"),
        (lambda k: "cond_stage_model.model.token_embedding.weight" in k, "Stable Diffusion 2.x"),
        (
            lambda k: any(key.startswith("conditioner.embedders.0.model.") for key in k),
            "the SDXL refiner",
        ),
    )
    for check, family in checks:
        if check(keys):
            raise ModelLoadError(f"{name} is a {family} model; Diffusion Layers runs {SUPPORTED}.")


def _cross_attention_dim(keys: Header, prefix: str) -> int | None:
    for key, shape in keys.items():
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return shape[1]
    return None


def describe_header(keys: Header) -> str:
    """What an unknown file's header holds, for the artist: tensor count and key prefixes."""
    prefixes: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        prefix = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        prefixes[prefix] = prefixes.get(prefix, 0) + 1
    common = sorted(prefixes.items(), key=lambda item: (-item[1], item[0]))[:4]
    listed = ", ".join(f"{prefix}.* ({count})" for prefix, count in common)
    count = f"{len(keys)} tensor" + ("" if len(keys) == 1 else "s")
    return count + (f"; the most common key prefixes are {listed}" if listed else "")


def kind_from_header(
    keys: Header, name: str, metadata: dict[str, str] | None = None
) -> CheckpointKind:
    """Family and inpaint flag from a checkpoint's tensor names and shapes, and from its
    safetensors ``metadata`` where a family's variants share every tensor."""
    family = families.checkpoint_family(keys)
    if family is not None and family.load is not None:  # a transformer family (Flux, ...)
        kind = CheckpointKind(family=family.id, inpaint=family.inpaint_header(keys))
        return _refined(kind, metadata or {})
    if family is None:
        _refuse_other_families(keys, name)
    conv_in = keys.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        if any(key.startswith(("lora_", "lora_unet_")) or ".lora_" in key for key in keys):
            raise ModelLoadError(f"{name} is a LoRA, not a checkpoint: put it in the lora/ folder.")
        if any(key.startswith("control_model.") or "input_hint_block" in key for key in keys):
            raise ModelLoadError(f"{name} is a ControlNet: put it in the controlnet/ folder.")
        raise ModelLoadError(
            f"{name} is of an unknown architecture: its header holds {describe_header(keys)}. "
            f"Diffusion Layers runs {SUPPORTED}."
        )
    in_channels = conv_in[1] if len(conv_in) == 4 else 0
    if in_channels not in (4, 9):
        raise ModelLoadError(
            f"{name} has a UNet with {in_channels} input channels; only 4 (regular) and 9 "
            "(inpaint) are supported."
        )
    if family is None and _cross_attention_dim(keys, UNET) == 1024:
        raise ModelLoadError(f"{name} is a Stable Diffusion 2.x model; we run {SUPPORTED}.")
    if family is None:
        raise ModelLoadError(
            f"{name} has a UNet of an unknown architecture ({describe_header(keys)}); "
            f"Diffusion Layers runs {SUPPORTED}."
        )
    if in_channels == 9 and not family.dedicated_inpaint:
        raise ModelLoadError(f"{name}: {family.label} has no 9-channel inpaint models we run.")
    return CheckpointKind(family=family.id, inpaint=in_channels == 9)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("reading %s failed: %s", path, exc)
        raise ModelLoadError(
            f"The file {path.name} in {path.parent.name}/ cannot be read: it is damaged or "
            "incomplete."
        ) from exc


def kind_from_unet_config(config: dict, name: str) -> CheckpointKind:
    """Family and inpaint flag from a diffusers UNet config."""
    in_channels = int(config.get("in_channels", 4))
    if in_channels not in (4, 9):
        raise ModelLoadError(f"{name}: a UNet with {in_channels} input channels is not supported.")
    family = families.unet_config_family(config)
    if family is None and config.get("cross_attention_dim") == 1024:
        raise ModelLoadError(f"{name} is a Stable Diffusion 2.x model; we run {SUPPORTED}.")
    if family is None:
        raise ModelLoadError(
            f"{name} has a UNet config of an unknown architecture; we run {SUPPORTED}."
        )
    return CheckpointKind(family=family.id, inpaint=in_channels == 9)


def detect_checkpoint(path: str | Path) -> CheckpointKind:
    """The kind of a single-file .safetensors checkpoint or of a diffusers folder."""
    path = Path(path)
    if path.is_dir():
        unet_config = path / "unet" / "config.json"
        transformer_config = path / "transformer" / "config.json"
        if not unet_config.is_file() and transformer_config.is_file():
            config = _read_json(transformer_config)
            index = path / "model_index.json"
            if index.is_file():  # tells same-tensor variants apart (Qwen-Image vs -Edit)
                config["_pipeline_class_name"] = _read_json(index).get("_class_name")
            family = next(
                (
                    f
                    for f in families.FAMILIES
                    if f.load is not None and f.matches_unet_config(config)
                ),
                None,
            )
            if family is None:
                raise ModelLoadError(
                    f"{path.name} holds a {config.get('_class_name', 'transformer')} model; "
                    f"Diffusion Layers runs {SUPPORTED}."
                )
            return CheckpointKind(family=family.id, inpaint=family.inpaint_config(config))
        if not unet_config.is_file():
            raise ModelLoadError(f"{path.name} is a folder without unet/config.json.")
        return kind_from_unet_config(_read_json(unet_config), path.name)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError(f"{path.name}: pickle files cannot be inspected without loading them.")
    keys, metadata = read_header(path)
    embedded = metadata.get("diffusion_layers.config")
    if embedded:
        try:
            return kind_from_unet_config(json.loads(embedded)["components"]["unet"], path.name)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("embedded config of %s: %s", path, exc)
            raise ModelLoadError(f"{path.name} has a damaged embedded config.") from exc
    return kind_from_header(keys, path.name, metadata)


def _refined(kind: CheckpointKind, metadata: dict[str, str]) -> CheckpointKind:
    """The family the file's metadata names, for families whose variants share every tensor
    (``Family.from_metadata``); ``kind`` unchanged otherwise."""
    hook = families.get(kind.family).from_metadata
    named = hook(metadata) if hook is not None else None
    if named is None or named == kind.family:
        return kind
    families.get(named)  # an id the hook returns must be registered (UnknownFamily otherwise)
    return CheckpointKind(family=named, inpaint=kind.inpaint)


def controlnet_family_from_header(keys: Header, name: str) -> str:
    if any(key.startswith(("lora_", "lora_unet_")) for key in keys):
        raise ModelLoadError(f"{name} is a LoRA, not a ControlNet.")
    # transformer ControlNets (Flux, Z-Image) first: they may lack a hint/condition embedding
    # and the SD families' header tests (UNet widths) would take anything
    for family in families.FAMILIES:
        if family.controlnet_class != "ControlNetModel" and family.matches_controlnet(keys):
            return family.id
    ldm = any("input_hint_block." in key for key in keys)
    diffusers = "controlnet_cond_embedding.conv_in.weight" in keys
    if not (ldm or diffusers):
        raise ModelLoadError(
            f"{name} is not a ControlNet model (no hint/condition embedding): its header "
            f"holds {describe_header(keys)}."
        )
    family = families.controlnet_family(keys)
    if family is not None:
        return family.id
    if _cross_attention_dim(keys, "") == 1024:
        raise ModelLoadError(
            f"{name} is a ControlNet for Stable Diffusion 2.x; we run {SUPPORTED}."
        )
    raise ModelLoadError(
        f"{name} is a ControlNet of an unknown architecture ({describe_header(keys)}); "
        f"Diffusion Layers runs {SUPPORTED}."
    )


def detect_controlnet(path: str | Path) -> str:
    """The family id a ControlNet file or diffusers folder belongs to."""
    path = Path(path)
    if path.is_dir():
        config = _read_json(path / "config.json")
        family = families.controlnet_config_family(config)
        if family is not None:
            return family.id
        if config.get("cross_attention_dim") == 1024:
            raise ModelLoadError(f"{path.name} is a ControlNet for SD2.x; we run {SUPPORTED}.")
        raise ModelLoadError(f"{path.name} is a ControlNet of an unknown architecture.")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return families.pickle_family("").id  # old .pth ControlNets: the legacy family
    keys, _ = read_header(path)
    return controlnet_family_from_header(keys, path.name)


def lora_family_from_header(keys: Header, metadata: dict[str, str]) -> str | None:
    """The family id a LoRA's header tells (lora_formats.lora_facts), else None."""
    from backend.engine.lora_formats import lora_facts

    return lora_facts(keys, metadata, "lora").family


def detect_lora(path: str | Path) -> str | None:
    """The family id a LoRA targets when its header tells, else None."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            return None
        path = files[0]
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return None
    keys, metadata = read_header(path)
    return lora_family_from_header(keys, metadata)
