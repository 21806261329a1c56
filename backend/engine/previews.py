"""Cheap step previews: latents projected linearly to RGB (no VAE decode; a few ms).

The factors are each family's ``preview`` (backend/engine/families): least-squares fits of
its VAE decoder (as in ComfyUI's latent formats), for latents as the denoiser sees them.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from backend.engine import families
from backend.engine.errors import InvalidRequest

#: family id -> (latent -> RGB factors, RGB bias), from each family's ``preview``; RGB comes
#: out in about [-1, 1].
LATENT_RGB: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    family.id: (family.preview.factors, family.preview.bias) for family in families.FAMILIES
}
#: Previews are enlarged x2 at most, and not past this many pixels on the longer side.
MAX_UPSCALE = 2
MAX_SIDE = 256


def latents_to_preview(latents: torch.Tensor, family: str) -> np.ndarray:
    """uint8 RGB (h, w, 3) from latents (4, h, w) or (B, 4, h, w) (the first of the batch)."""
    # 1. Check inputs.
    if family not in LATENT_RGB:
        raise InvalidRequest("family", family, f"expected one of {sorted(LATENT_RGB)}")
    if not isinstance(latents, torch.Tensor):
        raise InvalidRequest("latents", type(latents).__name__, "expected a torch.Tensor")
    if latents.ndim == 4:
        latents = latents[0]
    factors, bias = LATENT_RGB[family]
    channels = len(factors)
    if (
        latents.ndim != 3
        or latents.shape[0] != channels
        or latents.shape[1] < 1
        or latents.shape[2] < 1
    ):
        raise InvalidRequest(
            "latents", tuple(latents.shape), f"expected ({channels}, h, w) or (B, {channels}, h, w)"
        )
    # 2. Project on the latents' own device; only the small RGB image is moved.
    with torch.no_grad():
        weight = torch.tensor(factors, dtype=torch.float32, device=latents.device)
        offset = torch.tensor(bias, dtype=torch.float32, device=latents.device)
        rgb = torch.einsum("chw,cr->hwr", latents.detach().float(), weight) + offset
        rgb = ((rgb.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()
    # 3. Enlarge x2 at most (latents are 1/8 of the image).
    height, width = rgb.shape[:2]
    scale = min(MAX_UPSCALE, max(1, MAX_SIDE // max(height, width)))
    if scale > 1:
        rgb = cv2.resize(rgb, (width * scale, height * scale), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb)


def step_preview(latents: torch.Tensor, family: str) -> np.ndarray | None:
    """The step preview of ``latents`` or None when they are not the family's preview latents
    (another channel count, packed tokens): a preview is never worth failing a job for.
    A single-frame axis (B, C, 1, h, w), as Qwen-Image's video-style VAE latents have, is
    dropped first."""
    if latents.ndim == 5 and latents.shape[2] == 1:
        latents = latents[:, :, 0]
    channels = families.get(family).preview.channels
    shape = tuple(latents.shape)
    if latents.ndim not in (3, 4) or shape[-3] != channels or min(shape[-2:]) < 1:
        return None
    return latents_to_preview(latents, family)
