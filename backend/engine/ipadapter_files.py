"""IP-Adapter and CLIP vision files (ComfyUI's layout): what they are, from their headers.

``models/ipadapter/`` holds single IP-Adapter files (``image_proj.*`` and ``ip_adapter.*``
tensors, as the reference implementation and ComfyUI save them); ``models/clip_vision/`` holds
image encoders in the transformers layout (``vision_model.*``, ``visual_projection.weight``), e.g.
``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``. Names are file names (with the extension).

The image projection tells what an adapter reads: ``plain`` (``image_proj.proj.weight``) the
encoder's image embedding, ``plus`` (a Resampler, ``image_proj.latents``) and ``full``
(``image_proj.proj.0.weight``) its penultimate hidden states. The encoder it runs with is the
first one whose width fits. The family comes from the cross-attention width (768 SD1.5,
2048 SDXL) or the file's ``diffusion_layers.family`` metadata. A file whose name holds "face"
serves ``face`` controls (ip-adapter-plus-face, full-face); FaceID adapters need InsightFace
face embeddings and are listed with that problem.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from backend.engine import families
from backend.engine.detect import PICKLE_SUFFIXES, read_header
from backend.engine.errors import EngineError
from backend.engine.types import ImageEncoderEntry, Inventory, IpAdapterEntry

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors",)
FAMILY_KEY = "diffusion_layers.family"
PATCH = "vision_model.embeddings.patch_embedding.weight"
PROJECTION = "visual_projection.weight"
PICKLE_PROBLEM = "a pickle file: start the server with --allow-pickle to use it"
FACEID_PROBLEM = (
    "an IP-Adapter FaceID model: it needs InsightFace face embeddings, which this server does "
    "not compute; use ip-adapter-plus-face or ip-adapter-full-face instead"
)


def _files(folder: Path, allow_pickle: bool) -> list[tuple[str, Path]]:
    if not folder.is_dir():
        return []
    suffixes = SUFFIXES + PICKLE_SUFFIXES
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if not name.startswith(".") and path.suffix.lower() in suffixes:
                found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def load_tensors(path: Path) -> dict:
    """Every tensor of an IP-Adapter or encoder file (a pickle: ``weights_only``), flattened
    to ``prefix.name`` keys."""
    if path.suffix.lower() in SUFFIXES:
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{inner}": tensor for inner, tensor in value.items()})
        else:
            flat[key] = value
    return flat


def _header(path: Path, allow_pickle: bool) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    if path.suffix.lower() in SUFFIXES:
        keys, metadata = read_header(path)
        return dict(keys), dict(metadata or {})
    if not allow_pickle:
        raise PermissionError(PICKLE_PROBLEM)
    return {key: tuple(value.shape) for key, value in load_tensors(path).items()}, {}


def encoder_entry(name: str, path: Path, allow_pickle: bool) -> ImageEncoderEntry:
    try:
        keys, _metadata = _header(path, allow_pickle)
    except PermissionError as exc:
        return ImageEncoderEntry(name, str(path), problem=str(exc))
    if PATCH not in keys or PROJECTION not in keys:
        return ImageEncoderEntry(
            name,
            str(path),
            problem="not a CLIP vision model with a projection in the transformers layout "
            f"(no {PATCH} / {PROJECTION})",
        )
    projection, hidden = keys[PROJECTION][:2]
    return ImageEncoderEntry(name, str(path), hidden=int(hidden), projection=int(projection))


def adapter_entry(name: str, path: Path, allow_pickle: bool) -> IpAdapterEntry:
    kind = "face" if "face" in name.lower() else "reference"
    try:
        keys, metadata = _header(path, allow_pickle)
    except PermissionError as exc:
        return IpAdapterEntry(name, str(path), None, kind, problem=str(exc))
    cross = next(
        (shape[1] for key, shape in sorted(keys.items()) if key.endswith("to_k_ip.weight")), None
    )
    family = metadata.get(FAMILY_KEY) or getattr(families.lora_family_from_width(cross), "id", None)
    entry = IpAdapterEntry(name, str(path), family, kind, text_width=cross)
    if "faceid" in name.lower() or any("perceiver_resampler" in key for key in keys):
        entry.problem = FACEID_PROBLEM
    elif "image_proj.latents" in keys and "image_proj.proj_in.weight" in keys:
        entry.projection, entry.image_width = "plus", keys["image_proj.proj_in.weight"][1]
    elif "image_proj.proj.0.weight" in keys:
        entry.projection, entry.image_width = "full", keys["image_proj.proj.0.weight"][1]
    elif "image_proj.proj.weight" in keys and "image_proj.norm.weight" in keys:
        entry.projection, entry.image_width = "plain", keys["image_proj.proj.weight"][1]
    else:
        entry.problem = "not an IP-Adapter: it has no image_proj.* tensors"
    if entry.problem is None and cross is None:
        entry.problem = "not an IP-Adapter: it has no ip_adapter.*.to_k_ip weights"
    return entry


def _match_encoders(adapters: list[IpAdapterEntry], encoders: list[ImageEncoderEntry]) -> None:
    usable = [encoder for encoder in encoders if encoder.problem is None]
    for adapter in adapters:
        if adapter.problem is not None:
            continue
        hidden = adapter.projection != "plain"
        fits = [e for e in usable if (e.hidden if hidden else e.projection) == adapter.image_width]
        if fits:
            adapter.image_encoder = fits[0].name
            continue
        what = "hidden states" if hidden else "image embeddings"
        adapter.problem = (
            f"needs a CLIP vision encoder with {adapter.image_width}-wide {what} in "
            "models/clip_vision/ (most adapters run with CLIP-ViT-H-14-laion2B-s32B-b79K."
            "safetensors; ip-adapter_sdxl with CLIP-ViT-bigG-14-laion2B-39B-b160k), and none "
            "installed fits"
        )


def scan_references(models_dir: Path, allow_pickle: bool, inventory: Inventory) -> None:
    """Fill ``inventory.image_encoders`` and ``inventory.ipadapters`` from the models folder."""
    for kind, folder, make, target in (
        ("clip_vision", "clip_vision", encoder_entry, inventory.image_encoders),
        ("ipadapter", "ipadapter", adapter_entry, inventory.ipadapters),
    ):
        for name, path in _files(models_dir / folder, allow_pickle):
            try:
                target.append(make(name, path, allow_pickle))
            except (EngineError, OSError, ValueError, RuntimeError) as exc:
                log.warning("skipping %s file %s: %s", kind, path, exc)
                if kind == "ipadapter":
                    target.append(
                        IpAdapterEntry(name, str(path), None, problem="the file cannot be read")
                    )
    _match_encoders(inventory.ipadapters, inventory.image_encoders)
