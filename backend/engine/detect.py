"""What a model file is, from its safetensors header only (names and shapes, no tensor data).

``detect_checkpoint`` tells SD1.5 from SDXL and regular from 9-channel inpaint, and refuses
families we do not run (SD2.x, SDXL refiner, SD3, Flux, ...) with a message the artist can act
on. Diffusers folders are read from their ``config.json`` files instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

Header = dict[str, tuple[int, ...]]
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
UNET = "model.diffusion_model."
SUPPORTED = "SD1.5 and SDXL (regular and inpaint)"


@dataclass(frozen=True)
class CheckpointKind:
    family: str  # "sd15" | "sdxl"
    inpaint: bool


def read_header(path: str | Path) -> tuple[Header, dict[str, str]]:
    """Tensor names -> shapes, and the metadata, of a .safetensors file (no tensor data read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Model file not found: {path}")
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


def kind_from_header(keys: Header, name: str) -> CheckpointKind:
    """Family and inpaint flag from an original-layout (LDM) checkpoint's tensor names."""
    _refuse_other_families(keys, name)
    conv_in = keys.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        if any(key.startswith(("lora_", "lora_unet_")) or ".lora_" in key for key in keys):
            raise ModelLoadError(f"{name} is a LoRA, not a checkpoint: put it in the lora/ folder.")
        if any(key.startswith("control_model.") or "input_hint_block" in key for key in keys):
            raise ModelLoadError(f"{name} is a ControlNet: put it in the controlnet/ folder.")
        raise ModelLoadError(f"{name} is not a Stable Diffusion checkpoint ({SUPPORTED}).")
    in_channels = conv_in[1] if len(conv_in) == 4 else 0
    if in_channels not in (4, 9):
        raise ModelLoadError(
            f"{name} has a UNet with {in_channels} input channels; only 4 (regular) and 9 "
            "(inpaint) are supported."
        )
    sdxl = UNET + "label_emb.0.0.weight" in keys or any(
        key.startswith("conditioner.embedders.1.") for key in keys
    )
    cross = _cross_attention_dim(keys, UNET)
    if not sdxl and cross == 1024:
        raise ModelLoadError(f"{name} is a Stable Diffusion 2.x model; we run {SUPPORTED}.")
    return CheckpointKind(family="sdxl" if sdxl else "sd15", inpaint=in_channels == 9)


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
    if config.get("addition_embed_type") == "text_time":
        family = "sdxl"
    elif config.get("cross_attention_dim") == 1024:
        raise ModelLoadError(f"{name} is a Stable Diffusion 2.x model; we run {SUPPORTED}.")
    else:
        family = "sd15"
    return CheckpointKind(family=family, inpaint=in_channels == 9)


def detect_checkpoint(path: str | Path) -> CheckpointKind:
    """The kind of a single-file .safetensors checkpoint or of a diffusers folder."""
    path = Path(path)
    if path.is_dir():
        unet_config = path / "unet" / "config.json"
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
    return kind_from_header(keys, path.name)


def controlnet_family_from_header(keys: Header, name: str) -> str:
    if any(key.startswith(("lora_", "lora_unet_")) for key in keys):
        raise ModelLoadError(f"{name} is a LoRA, not a ControlNet.")
    ldm = any("input_hint_block." in key for key in keys)
    diffusers = "controlnet_cond_embedding.conv_in.weight" in keys
    if not (ldm or diffusers):
        raise ModelLoadError(f"{name} is not a ControlNet model (no hint/condition embedding).")
    if any(key.endswith(("label_emb.0.0.weight", "add_embedding.linear_1.weight")) for key in keys):
        return "sdxl"
    if _cross_attention_dim(keys, "") == 1024:
        raise ModelLoadError(
            f"{name} is a ControlNet for Stable Diffusion 2.x; we run {SUPPORTED}."
        )
    return "sd15"


def detect_controlnet(path: str | Path) -> str:
    """The family ("sd15" | "sdxl") a ControlNet file or diffusers folder belongs to."""
    path = Path(path)
    if path.is_dir():
        config = _read_json(path / "config.json")
        if config.get("addition_embed_type") == "text_time":
            return "sdxl"
        if config.get("cross_attention_dim") == 1024:
            raise ModelLoadError(f"{path.name} is a ControlNet for SD2.x; we run {SUPPORTED}.")
        return "sd15"
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return "sd15"  # old .pth ControlNets were all SD1.5
    keys, _ = read_header(path)
    return controlnet_family_from_header(keys, path.name)


def lora_family_from_header(keys: Header, metadata: dict[str, str]) -> str | None:
    version = metadata.get("ss_base_model_version", "")
    if version.startswith("sdxl"):
        return "sdxl"
    if version.startswith("sd_v1"):
        return "sd15"
    if version.startswith("sd_v2"):
        return None
    if any(key.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.", "te2.")) for key in keys):
        return "sdxl"
    if any(key.startswith("lora_te_") for key in keys):
        return "sd15"
    for key, shape in keys.items():
        if "attn2" in key and ("to_k" in key) and ("lora_down" in key or "lora_A" in key):
            return {768: "sd15", 2048: "sdxl"}.get(shape[-1])
    return None


def detect_lora(path: str | Path) -> str | None:
    """The family a LoRA targets when its header tells ("sd15" | "sdxl"), else None."""
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
