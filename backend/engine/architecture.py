"""Which ControlNet fits which UNet: a shape signature read from the models themselves.

A ControlNet adds residuals to the UNet's down and mid blocks, so it only works with a UNet
of the same family *and* the same widths: the first block's channels and the cross-attention
(text) dimension. Both come from the loaded UNet's config, and from a ControlNet file's
header (no tensor data read) or its diffusers ``config.json``. Where the file came from (a
built-in, the models folder) plays no part.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engine.detect import PICKLE_SUFFIXES, Header, read_header
from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

#: conv_in of a ControlNet: diffusers layout, or the original (LDM) layout with or without
#: the "control_model." prefix.
CONV_IN_KEYS = (
    "conv_in.weight",
    "control_model.input_blocks.0.0.weight",
    "input_blocks.0.0.weight",
)

#: (first block channels, cross-attention dim) when a diffusers config leaves them out
DIFFUSERS_DEFAULTS = (320, 1280)


@dataclass(frozen=True)
class Signature:
    """The widths a ControlNet and its UNet must share."""

    channels: int  # the first block's channels (320 for SD1.5/SDXL, 32 for the tiny ones)
    cross_attention_dim: int  # the text embedding width (768 SD1.5, 2048 SDXL)

    def describe(self) -> str:
        return f"{self.channels} channels, text width {self.cross_attention_dim}"


def unet_signature(unet: Any) -> Signature:
    """The signature of a loaded diffusers UNet (or ControlNet) from its config."""
    return signature_of_config(dict(unet.config))


def signature_of_config(config: dict) -> Signature:
    """The signature of a diffusers UNet or ControlNet config dict (diffusers' defaults for
    missing keys)."""
    cross = config.get("cross_attention_dim", DIFFUSERS_DEFAULTS[1])
    if isinstance(cross, (list, tuple)):
        cross = cross[0]
    channels = config.get("block_out_channels", [DIFFUSERS_DEFAULTS[0]])
    return Signature(int(channels[0]), int(cross))


def _from_header(keys: Header) -> Signature | None:
    channels = next((keys[key][0] for key in CONV_IN_KEYS if len(keys.get(key, ())) == 4), None)
    cross = next(
        (
            shape[1]
            for key, shape in keys.items()
            if key.endswith("attn2.to_k.weight") and len(shape) == 2
        ),
        None,
    )
    if channels is None or cross is None:
        return None
    return Signature(int(channels), int(cross))


def controlnet_signature(path: str | Path) -> Signature | None:
    """The signature of a ControlNet file or diffusers folder; None when it cannot be read
    without loading the model (pickle files, unusual layouts): then only the family counts."""
    path = Path(path)
    try:
        if path.is_dir():
            return signature_of_config(json.loads((path / "config.json").read_text("utf-8")))
        if path.suffix.lower() in PICKLE_SUFFIXES:
            return None
        keys, _ = read_header(path)
    except (OSError, ValueError, KeyError, TypeError, ModelLoadError) as exc:
        log.warning("cannot read the architecture of %s: %s", path, exc)
        return None
    return _from_header(keys)


UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


@dataclass(frozen=True)
class CheckpointFacts:
    """What a checkpoint's header tells beyond its family: its UNet widths and whether its
    VAE is inside."""

    signature: Signature | None
    has_vae: bool


def checkpoint_facts(path: str | Path) -> CheckpointFacts:
    """From a .safetensors header (embedded config or original layout) or a diffusers folder;
    pickles cannot be read without loading them (unknown widths, VAE assumed inside)."""
    from backend.engine.loader import CONFIG_KEY
    from backend.engine.vae import checkpoint_has_vae

    path = Path(path)
    if path.is_dir():
        config = path / "unet" / "config.json"
        signature = None
        if config.is_file():
            signature = signature_of_config(json.loads(config.read_text("utf-8")))
        return CheckpointFacts(signature, (path / "vae" / "config.json").is_file())
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return CheckpointFacts(None, True)
    keys, metadata = read_header(path)
    embedded = metadata.get(CONFIG_KEY)
    if embedded:
        unet = json.loads(embedded)["components"]["unet"]
        return CheckpointFacts(signature_of_config(unet), checkpoint_has_vae(keys))
    conv_in = keys.get(UNET_CONV_IN, ())
    cross = next(
        (
            shape[1]
            for key, shape in keys.items()
            if key.startswith("model.diffusion_model.")
            and key.endswith("attn2.to_k.weight")
            and len(shape) == 2
        ),
        None,
    )
    signature = Signature(int(conv_in[0]), int(cross)) if len(conv_in) == 4 and cross else None
    return CheckpointFacts(signature, checkpoint_has_vae(keys))


def widths(signature: Signature | None) -> tuple[int, int] | None:
    """A signature as the plain (channels, text width) pair the inventory keeps."""
    return None if signature is None else (signature.channels, signature.cross_attention_dim)


def describe_widths(pair: tuple[int, int]) -> str:
    return Signature(*pair).describe()
