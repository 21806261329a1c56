"""Super-resolution models (``models/upscale/``) through spandrel, and plain Lanczos resampling.

spandrel detects the architecture (ESRGAN, Real-ESRGAN Compact, SwinIR, HAT, OmniSR, SPAN, ...)
and the scale from the weights. Files are read here, not by spandrel's own loader: a
``.safetensors`` file directly, a ``.pth``/``.pt`` file with ``torch.load(weights_only=True)``
(only tensors and plain containers). A pickle that needs more is refused with a sentence unless
the server runs with ``--allow-pickle``; then spandrel's restricted unpickler reads it.

A model runs over tiles with feathered overlap (``tiles.py``), so an 8192 px picture never
needs the whole picture in the model at once. The alpha channel is scaled with Lanczos
(premultiplied, so transparent pixels' colours never bleed in).
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.engine.errors import InvalidRequest, ModelNotFound
from backend.engine.tiles import BandBlender, pad_to_multiple, tile_layout
from backend.engine.types import UpscalerEntry

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pth", ".pt")
PICKLE_SUFFIXES = (".pth", ".pt")
MODEL_TILE = 512  # input pixels per model tile
MODEL_OVERLAP = 32

PICKLE_PROBLEM = (
    "The upscaler {name!r} is a pickle file that the safe loader cannot read: start the "
    "server with --allow-pickle if you trust it, or use its .safetensors version."
)
UNKNOWN_PROBLEM = "The upscaler {name!r} is not a super-resolution model spandrel knows ({detail})."


def _stub_torchvision() -> None:
    """spandrel imports torchvision only for LaMa and RestoreFormer (not upscalers). PyPI's
    torchvision wheel cannot load next to torch's CPU build: give those two modules the few
    names they import, so spandrel itself loads."""
    for name in [key for key in sys.modules if key.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    functional: Any = types.ModuleType("torchvision.transforms.functional")

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not installed")

    functional.InterpolationMode = Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    functional.rotate = functional.normalize = unavailable
    transforms: Any = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    root: Any = types.ModuleType("torchvision")
    root.transforms = transforms
    sys.modules.update(
        {
            "torchvision": root,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )


def spandrel_module() -> Any:
    """spandrel, imported once; a torchvision stub (see above) lives only during its import,
    so transformers/diffusers never mistake it for an installed torchvision."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    stubbed = False
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        _stub_torchvision()
        stubbed = True
    try:
        import spandrel
    finally:
        if stubbed:
            for name in [key for key in sys.modules if key.split(".")[0] == "torchvision"]:
                del sys.modules[name]
    return spandrel


def read_state_dict(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """The file's tensors (see the module doc); ``InvalidRequest`` with a sentence if refused."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not plain"
        if not allow_pickle:
            log.info("upscaler %s refused by weights_only: %s", path, error)
            raise InvalidRequest(
                "upscale.model", path.stem, PICKLE_PROBLEM.format(name=path.name)
            ) from error
        loader = spandrel_module().ModelLoader("cpu")
        return loader.load_state_dict_from_file(str(path))
    if not isinstance(data, dict):
        raise InvalidRequest("upscale.model", path.name, "expected a state dict of tensors")
    return data


def load_descriptor(path: Path, allow_pickle: bool) -> Any:
    """spandrel's ImageModelDescriptor for the file (architecture and scale detected)."""
    spandrel = spandrel_module()
    state = spandrel.canonicalize_state_dict(read_state_dict(path, allow_pickle))
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError as error:
        raise InvalidRequest(
            "upscale.model", path.name, UNKNOWN_PROBLEM.format(name=path.name, detail=error)
        ) from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise InvalidRequest(
            "upscale.model",
            path.name,
            UNKNOWN_PROBLEM.format(name=path.name, detail="it is an inpainting model"),
        )
    return descriptor


def scan_upscalers(folder: Path, allow_pickle: bool) -> list[UpscalerEntry]:
    """Every file in ``folder`` (recursively), named by its relative path with the suffix."""
    if not folder.is_dir():
        return []
    entries = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            path = Path(root) / file_name
            if file_name.startswith(".") or path.suffix.lower() not in SUFFIXES:
                continue
            name = path.relative_to(folder).as_posix()
            entries.append(describe(name, path, allow_pickle))
    return entries


def describe(name: str, path: Path, allow_pickle: bool) -> UpscalerEntry:
    try:
        descriptor = load_descriptor(path, allow_pickle)
    except InvalidRequest as error:
        return UpscalerEntry(name, str(path), 0, "unknown", error.reason)
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        log.warning("cannot read upscaler %s: %s", path, error)
        return UpscalerEntry(name, str(path), 0, "unknown", f"The file {name} cannot be read.")
    return UpscalerEntry(name, str(path), int(descriptor.scale), descriptor.architecture.name)


def find_upscaler(upscalers: list[UpscalerEntry], name: str) -> UpscalerEntry:
    entry = next((item for item in upscalers if item.name == name), None)
    if entry is None:
        raise ModelNotFound(f"Upscaler {name!r} is not installed.", field="upscale.model")
    if entry.problem is not None:
        raise InvalidRequest("upscale.model", name, entry.problem)
    return entry


class UpscalerCache:
    """The last used upscale model, on the engine's device."""

    def __init__(self, device: str, allow_pickle: bool) -> None:
        self.device = device
        self.allow_pickle = allow_pickle
        self._key: tuple[str, float] | None = None
        self._model: Any = None

    def get(self, entry: UpscalerEntry) -> Any:
        key = (entry.path, os.path.getmtime(entry.path))
        if self._key != key:
            self._model = None
            descriptor = load_descriptor(Path(entry.path), self.allow_pickle)
            self._model = descriptor.to(self.device).eval()
            self._key = key
        return self._model


# -- running ---------------------------------------------------------------------------------


def resample(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos resize of (H, W, 3|4) uint8; RGBA is resized premultiplied (no colour bleed)."""
    if image.shape[:2] == (height, width):
        return image.copy()
    if image.shape[2] == 3:
        return np.asarray(Image.fromarray(image, "RGB").resize((width, height), Image.LANCZOS))
    if image[..., 3].min() == 255:  # opaque: 8-bit RGB resize, no float copies of the picture
        rgb = resample(np.ascontiguousarray(image[..., :3]), width, height)
        return np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)
    alpha = image[..., 3:4].astype(np.float32) / 255.0
    channels = [image[..., index].astype(np.float32) * alpha[..., 0] for index in range(3)]
    channels.append(alpha[..., 0] * 255.0)
    resized = [
        np.asarray(Image.fromarray(c, "F").resize((width, height), Image.LANCZOS)) for c in channels
    ]
    out_alpha = np.clip(resized[3], 0.0, 255.0)
    safe = np.maximum(out_alpha / 255.0, 1e-6)
    rgb = [np.where(out_alpha > 0.5, resized[i] / safe, 0.0) for i in range(3)]
    stacked = np.stack([*rgb, out_alpha], axis=2)
    return np.clip(stacked + 0.5, 0, 255).astype(np.uint8)


def run_model(
    model: Any,
    rgb: np.ndarray,
    check: Callable[[], None] | None = None,
    tile: int = MODEL_TILE,
    overlap: int = MODEL_OVERLAP,
) -> np.ndarray:
    """(H, W, 3) uint8 through the super-resolution model: (H*s, W*s, 3), tiled, blended."""
    scale = int(model.scale)
    height, width = rgb.shape[:2]
    padded = pad_to_multiple(rgb)
    tiles = tile_layout(padded.shape[1], padded.shape[0], tile, overlap)
    big = np.zeros((padded.shape[0] * scale, padded.shape[1] * scale, 3), np.uint8)
    scaled = [
        type(t)(t.x * scale, t.y * scale, t.width * scale, t.height * scale, t.row, t.column)
        for t in tiles
    ]
    blender = BandBlender(big, scaled)
    parameter = next(model.model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    for small, large in zip(tiles, scaled, strict=True):
        if check is not None:
            check()
        crop = padded[small.y : small.y + small.height, small.x : small.x + small.width]
        tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
        tensor = tensor.to(model.device, dtype) / 255.0
        with torch.inference_mode():
            out = model(tensor).clamp(0.0, 1.0)
        pixels = (out[0].permute(1, 2, 0).float().cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        blender.add(large, pixels)
    return blender.finish()[: height * scale, : width * scale]


def scale_image(
    image: np.ndarray,
    width: int,
    height: int,
    model: Any | None = None,
    check: Callable[[], None] | None = None,
) -> np.ndarray:
    """(H, W, 4) RGBA to exactly (height, width, 4): the model (if any) then Lanczos to the
    exact size; the alpha channel Lanczos-scaled from the source."""
    if model is None:
        return resample(image, width, height)
    rgb = run_model(model, np.ascontiguousarray(image[..., :3]), check)
    rgb = resample(rgb, width, height)
    alpha = resample(image, width, height)[..., 3:4]
    return np.concatenate([rgb, alpha], axis=2)
