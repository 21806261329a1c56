"""The model family registry: one module per family, listed here in detection order.

Adding a family (docs/engine.md, "Adding a family"):

1. Write ``backend/engine/families/<id>.py`` defining ``FAMILY = Family(...)`` (base.py documents
   every field): header tests (``matches_checkpoint`` etc., from tensor names and shapes only),
   native size and size multiple, shipped config folders, text encoders, the task pipelines it
   offers, latent-preview factors, defaults, LoRA facts, what the docker hides, memory policy,
   its tiny test configuration, and ``load``/``encode`` hooks when it does not load like SD.
2. Import it below and put it in ``FAMILIES`` (more specific families before looser ones: the
   first whose test matches wins).
3. Add its header fixtures and tests (tests/engine/test_families.py shows the pattern).

Code outside this package asks the registry (``get``, ``checkpoint_family``, ...) and reads the
``Family`` fields; it never compares a family id with a literal (tests/engine/
test_family_structure.py greps for that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.engine.families import flux1, flux2_klein, qwen_image, sd15, sdxl, zimage
from backend.engine.families.base import (
    ALL_MODES,
    Defaults,
    Family,
    Header,
    LatentPreview,
    LoraSpec,
    MemoryPolicy,
    TextEncoder,
    TinySpec,
)

__all__ = [
    "ALL_MODES",
    "FAMILIES",
    "Defaults",
    "Family",
    "Header",
    "LatentPreview",
    "LoraSpec",
    "MemoryPolicy",
    "TextEncoder",
    "TinySpec",
    "UnknownFamily",
    "checkpoint_family",
    "controlnet_config_family",
    "controlnet_family",
    "fallback",
    "fits",
    "get",
    "ids",
    "label",
    "lora_family_from_fallback",
    "lora_family_from_keys",
    "lora_family_from_metadata",
    "lora_family_from_width",
    "pickle_family",
    "vae_family",
    "tiny_family",
    "unet_config_family",
]

#: every family, in detection order (the first whose header test matches wins)
FAMILIES: tuple[Family, ...] = (
    sdxl.FAMILY,
    sd15.FAMILY,
    # Qwen-Image before Flux: its ControlNets hold controlnet_blocks.* too (and txt_norm);
    # Layered (extra key) first, base last
    *qwen_image.FAMILIES,
    flux2_klein.FAMILY,  # before Flux.1: FLUX.2 headers share its double_blocks names
    flux1.SCHNELL,  # before dev: both are Flux.1 headers, schnell lacks guidance_in
    flux1.FAMILY,
    zimage.FAMILY,
)


class UnknownFamily(KeyError):
    """A family id no module declares."""


def ids() -> tuple[str, ...]:
    return tuple(family.id for family in FAMILIES)


def get(family_id: str) -> Family:
    """The family ``family_id``; UnknownFamily names the known ones."""
    for family in FAMILIES:
        if family.id == family_id:
            return family
    raise UnknownFamily(f"family={family_id!r}: expected one of {', '.join(ids())}")


def fits(addon_family: str | None, model_family: str) -> bool:
    """Whether a LoRA/ControlNet made for ``addon_family`` works on a ``model_family`` model
    (the same family, or one the model's family declares in ``shares_addons_of``)."""
    if addon_family == model_family:
        return True
    for family in FAMILIES:
        if family.id == model_family:
            return addon_family in family.shares_addons_of
    return False


def label(family_id: str | None) -> str:
    """How artists name ``family_id`` ("SD1.5"); the id itself when no module declares it."""
    for family in FAMILIES:
        if family.id == family_id:
            return family.label
    return str(family_id)


def checkpoint_family(keys: Header) -> Family | None:
    """The family of an original-layout single-file checkpoint, from its header."""
    return next((family for family in FAMILIES if family.matches_checkpoint(keys)), None)


def unet_config_family(config: Mapping[str, Any]) -> Family | None:
    """The family of a diffusers UNet/transformer config."""
    return next((family for family in FAMILIES if family.matches_unet_config(config)), None)


def controlnet_family(keys: Header) -> Family | None:
    return next((family for family in FAMILIES if family.matches_controlnet(keys)), None)


def controlnet_config_family(config: Mapping[str, Any]) -> Family | None:
    return next((f for f in FAMILIES if f.matches_controlnet_config(config)), None)


def lora_family_from_metadata(metadata: Mapping[str, str]) -> Family | None:
    """The family kohya/modelspec training metadata names, if it names one we run."""
    version = metadata.get("ss_base_model_version", "").lower()
    architecture = metadata.get("modelspec.architecture", "").lower()
    for family in FAMILIES:
        spec = family.lora
        if (spec.metadata_versions and version.startswith(spec.metadata_versions)) or (
            spec.metadata_architectures and architecture.startswith(spec.metadata_architectures)
        ):
            return family
    return None


def lora_family_from_keys(keys: Header) -> Family | None:
    return next((family for family in FAMILIES if family.matches_lora(keys)), None)


def lora_family_from_width(width: int | None) -> Family | None:
    """The family whose text embedding is ``width`` wide (a LoRA's cross-attention input)."""
    if width is None:
        return None
    return next((family for family in FAMILIES if family.lora.text_width == width), None)


def lora_family_from_fallback(keys: Header) -> Family | None:
    """The last resort: a family whose LoRA key prefixes the file has."""
    for family in FAMILIES:
        prefixes = family.lora.fallback_prefixes
        if prefixes and any(key.startswith(prefixes) for key in keys):
            return family
    return None


def fallback() -> Family:
    """The family assumed when nothing tells (the legacy family: old files were all SD1.5)."""
    return next((family for family in FAMILIES if family.legacy_pickles), FAMILIES[-1])


def pickle_family(name: str) -> Family:
    """The family a pickle file is taken for (its header cannot be read without loading it):
    a family whose ``pickle_name_hints`` the name holds, else the legacy-pickle family."""
    lowered = name.lower()
    for family in FAMILIES:
        if any(hint in lowered for hint in family.pickle_name_hints):
            return family
    return fallback()


def vae_family(scaling_factor: float) -> Family | None:
    """The family whose VAE has this scaling factor, when only one has it."""
    found = [f for f in FAMILIES if abs(f.vae_scaling_factor - scaling_factor) < 1e-4]
    return found[0] if len(found) == 1 else None


def tiny_family(name: str) -> tuple[Family, str] | None:
    """(family, kind) of a tiny built-in ``name``: kind is "checkpoint", "controlnet" or
    "lora"; None when no family declares it."""
    for family in FAMILIES:
        if name in family.tiny.checkpoints:
            return family, "checkpoint"
        if name in family.tiny.controlnets:
            return family, "controlnet"
        if name in family.tiny.loras:
            return family, "lora"
    return None
