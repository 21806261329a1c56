"""The models folder: what is installed, and safe name -> path resolution.

Layout: ``models_dir/{checkpoints,controlnet,lora,vae}/``; names are paths relative to the kind's
folder without the extension, with "/" separators ("anime/illustrious"). Files are
``.safetensors`` (pickles only when allowed) or diffusers folders. Family and inpaint come from
file headers; unreadable files are skipped with a warning in the log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

from backend.engine import families
from backend.engine.architecture import checkpoint_facts, controlnet_signature, widths
from backend.engine.detect import PICKLE_SUFFIXES, detect_checkpoint, detect_controlnet, read_header
from backend.engine.errors import EngineError, ModelNotFound
from backend.engine.lora_formats import lora_facts
from backend.engine.types import (
    CheckpointEntry,
    ControlNetEntry,
    Inventory,
    LoraEntry,
    SkippedModel,
    VaeEntry,
)
from backend.engine.vae import detect_vae

log = logging.getLogger(__name__)

KINDS = ("checkpoints", "controlnet", "lora", "vae")
SAFE_SUFFIX = ".safetensors"
GGUF_SUFFIX = ".gguf"
#: file-name keywords -> control type (first match wins; order matters: "softedge" before "hed").
#: The types are the protocol's control types ("pose", not "openpose"); the last ones are
#: ControlNets for inputs we have no control type for: never picked for another type.
CONTROL_KEYWORDS = (
    ("scribble", "scribble"),
    ("lineart", "lineart"),
    ("softedge", "softedge"),
    ("hed", "softedge"),
    ("pidi", "softedge"),
    ("canny", "canny"),
    ("depth", "depth"),
    ("normal", "normal"),
    ("openpose", "pose"),
    ("pose", "pose"),
    ("tile", "tile"),
    ("inpaint", "inpaint"),
    ("mlsd", "mlsd"),
    ("shuffle", "shuffle"),
    ("ip2p", "ip2p"),
    ("qrcode", "qrcode"),
    ("brightness", "brightness"),
    ("recolor", "recolor"),
    ("_seg", "seg"),
)


def control_type_from_name(name: str) -> str:
    lowered = PurePosixPath(name).name.lower()
    for keyword, control_type in CONTROL_KEYWORDS:
        if keyword in lowered:
            return control_type
    return "any"


def _is_diffusers_folder(path: Path, kind: str) -> bool:
    if kind == "checkpoints":
        return (path / "model_index.json").is_file()
    if kind in ("controlnet", "vae"):
        return (path / "config.json").is_file()
    return (path / "pytorch_lora_weights.safetensors").is_file()


def _model_paths(folder: Path, kind: str, allow_pickle: bool) -> list[tuple[str, Path]]:
    """(name, path) of every model under ``folder``, hidden entries skipped, sorted by name."""
    found: list[tuple[str, Path]] = []
    suffixes = (SAFE_SUFFIX,) + (PICKLE_SUFFIXES if allow_pickle else ())
    if kind == "checkpoints":
        suffixes += (GGUF_SUFFIX,)  # quantised transformers (Flux.1, Z-Image)
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        root_path = Path(root)
        real = os.path.realpath(root_path)
        if real in seen:  # a symlink loop: visit each real folder once
            dirs[:] = []
            continue
        seen.add(real)
        keep = []
        for directory in sorted(dirs):
            if directory.startswith("."):
                continue
            path = root_path / directory
            if _is_diffusers_folder(path, kind):
                found.append((path.relative_to(folder).as_posix(), path))
            else:
                keep.append(directory)
        dirs[:] = keep
        for file_name in files:
            path = root_path / file_name
            if file_name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            found.append((path.relative_to(folder).with_suffix("").as_posix(), path))
    unique: dict[str, Path] = {}
    for name, path in sorted(found, key=lambda item: (item[0], item[1].suffix != SAFE_SUFFIX)):
        unique.setdefault(name, path)  # "x.safetensors" wins over "x.ckpt"
    return sorted(unique.items())


def _guess_from_name(name: str) -> tuple[str, bool]:
    """A pickle's family and inpaint flag (its header cannot be read without loading it)."""
    return families.pickle_family(name).id, "inpaint" in name.lower()


def _checkpoint_entry(name: str, path: Path) -> CheckpointEntry:
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        family, inpaint = _guess_from_name(name)  # a pickle cannot be inspected without loading
        return CheckpointEntry(name, family, inpaint, str(path))
    kind = detect_checkpoint(path)
    if families.get(kind.family).load is not None:
        # a transformer family: its text encoders and VAE are separate files its loader
        # finds (and names when missing)
        return CheckpointEntry(name, kind.family, kind.inpaint, str(path))
    facts = checkpoint_facts(path)
    return CheckpointEntry(
        name, kind.family, kind.inpaint, str(path), widths(facts.signature), facts.has_vae
    )


def lora_entry(name: str, path: Path) -> LoraEntry:
    """A LoRA's entry: format, family, text width and (if it cannot be used) the reason."""
    file = path
    if path.is_dir():
        file = path / "pytorch_lora_weights.safetensors"
    if file.suffix.lower() in PICKLE_SUFFIXES:
        return LoraEntry(name, None, str(path), "unknown", None, _PICKLE_LORA.format(name=name))
    keys, metadata = read_header(file)
    facts = lora_facts(keys, metadata, name)
    return LoraEntry(name, facts.family, str(path), facts.format, facts.text_width, facts.problem)


_PICKLE_LORA = (
    "The LoRA {name!r} is a pickle file, whose contents cannot be checked before loading: "
    "use its .safetensors version."
)


def _scan_kind(models_dir: Path, kind: str, allow_pickle: bool, inventory: Inventory) -> None:
    folder = models_dir / kind
    if not folder.is_dir():
        return
    for name, path in _model_paths(folder, kind, allow_pickle):
        try:
            if kind == "checkpoints":
                inventory.checkpoints.append(_checkpoint_entry(name, path))
            elif kind == "controlnet":
                family = detect_controlnet(path)
                entry = ControlNetEntry(
                    name,
                    family,
                    control_type_from_name(name),
                    str(path),
                    widths(controlnet_signature(path)),
                )
                inventory.controlnets.append(entry)
            elif kind == "lora":
                inventory.loras.append(lora_entry(name, path))
            else:
                facts = detect_vae(path, name)
                inventory.vaes.append(VaeEntry(name, facts.family, str(path), facts.problem))
        except (EngineError, OSError, ValueError) as exc:
            log.warning("skipping %s model %s: %s", kind, path, exc)
            reason = exc.message if isinstance(exc, EngineError) else None
            reason = reason or f"The file {path.name} in the {kind} folder cannot be read."
            inventory.skipped.append(SkippedModel(kind, name, reason))


def merge_inventories(base: Inventory, extra: Inventory) -> Inventory:
    """``base`` plus the entries of ``extra`` whose names ``base`` does not already use."""
    merged = Inventory(
        list(base.checkpoints), list(base.controlnets), list(base.loras), list(base.vaes)
    )
    names = {entry.name for entry in merged.checkpoints}
    merged.checkpoints += [e for e in extra.checkpoints if e.name not in names]
    names = {entry.name for entry in merged.controlnets}
    merged.controlnets += [e for e in extra.controlnets if e.name not in names]
    names = {entry.name for entry in merged.loras}
    merged.loras += [e for e in extra.loras if e.name not in names]
    names = {entry.name for entry in merged.vaes}
    merged.vaes += [e for e in extra.vaes if e.name not in names]
    merged.skipped = list(base.skipped) + list(extra.skipped)
    merged.upscalers = list(base.upscalers) + list(extra.upscalers)
    merged.ipadapters = list(base.ipadapters) + list(extra.ipadapters)
    merged.image_encoders = list(base.image_encoders) + list(extra.image_encoders)
    return merged


def scan_models(
    models_dir: str | Path | None,
    extra: Inventory | None = None,
    *,
    allow_pickle: bool = False,
) -> Inventory:
    """Every model under ``models_dir`` (a missing folder is simply empty), then ``extra``'s."""
    inventory = Inventory()
    if models_dir is not None and Path(models_dir).is_dir():
        for kind in KINDS:
            _scan_kind(Path(models_dir), kind, allow_pickle, inventory)
        # Super-resolution models: architecture and scale from spandrel (upscalers.py).
        from backend.engine.upscalers import scan_upscalers

        inventory.upscalers = scan_upscalers(Path(models_dir) / "upscale", allow_pickle)
        # IP-Adapters and their CLIP vision encoders (ipadapter_files.py).
        from backend.engine.ipadapter_files import scan_references

        scan_references(Path(models_dir), allow_pickle, inventory)
    return merge_inventories(inventory, extra) if extra is not None else inventory


def check_model_name(name: object) -> str:
    """Reject names that could leave the models folder: absolute, "..", NUL, backslashes."""
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFound(f"Invalid model name {name!r}: empty.", field="model")
    reason = None
    if "\x00" in name or "\\" in name:
        reason = "it contains a NUL or a backslash"
    elif name.startswith("/") or PurePosixPath(name).is_absolute() or ":" in name.split("/")[0]:
        reason = "absolute paths are not allowed"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        reason = "it contains an empty, '.' or '..' path part"
    if reason:
        raise ModelNotFound(f"Invalid model name {name!r}: {reason}.", field="model")
    return name


def resolve_model_path(
    models_dir: str | Path, kind: str, name: str, *, allow_pickle: bool = True
) -> Path:
    """The file or diffusers folder of model ``name`` of ``kind``, always inside models_dir."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    check_model_name(name)
    base = (Path(models_dir) / kind).absolute()
    candidate = base.joinpath(*name.split("/"))
    # Lexical containment (symlinks the artist placed inside the folder are honoured).
    if os.path.commonpath([os.path.normpath(candidate), os.path.normpath(base)]) != str(
        os.path.normpath(base)
    ):
        raise ModelNotFound(f"Invalid model name {name!r}: outside the {kind} folder.")
    suffixes = (SAFE_SUFFIX,) + (PICKLE_SUFFIXES if allow_pickle else ())
    for suffix in suffixes:
        path = candidate.parent / (candidate.name + suffix)
        if path.is_file():
            return path
    if candidate.is_dir() and _is_diffusers_folder(candidate, kind):
        return candidate
    raise ModelNotFound(f"No {kind} model named {name!r} in {base}.", field="model")
