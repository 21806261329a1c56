from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from backend.engine.errors import InvalidRequest
from backend.engine.previews import LATENT_RGB, latents_to_preview


def _latents_for(rgb: tuple[float, float, float], family: str, size: int = 16) -> torch.Tensor:
    """Latents whose linear projection is the given colour in [-1, 1] (least squares)."""
    factors, bias = LATENT_RGB[family]
    matrix = torch.tensor(factors)  # (4, 3)
    target = torch.tensor(rgb) - torch.tensor(bias)
    vector = torch.linalg.lstsq(matrix.T, target.unsqueeze(1)).solution.squeeze(1)
    return vector.view(1, 4, 1, 1).expand(2, 4, size, size).clone()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_preview_colour_and_size(family: str) -> None:
    latents = _latents_for((0.8, -0.2, -0.8), family)
    preview = latents_to_preview(latents, family)
    assert preview.dtype == np.uint8 and preview.shape == (32, 32, 3)  # x2
    r, g, b = preview.reshape(-1, 3).mean(axis=0)
    assert abs(r - 229.5) < 2 and abs(g - 102) < 2 and abs(b - 25.5) < 2


def test_preview_large_latents_not_enlarged_and_fast() -> None:
    latents = torch.randn(1, 4, 128, 128)
    start = time.perf_counter()
    preview = latents_to_preview(latents, "sdxl")
    elapsed = time.perf_counter() - start
    assert preview.shape == (256, 256, 3)  # 128 -> x2 allowed up to 256
    assert latents_to_preview(torch.randn(4, 160, 96), "sd15").shape == (160, 96, 3)
    assert elapsed < 0.5


def test_preview_half_precision() -> None:
    latents = _latents_for((0.0, 0.0, 0.0), "sd15").half()
    preview = latents_to_preview(latents, "sd15")
    assert np.all(np.abs(preview.astype(int) - 127) <= 2)


def test_preview_bad_input() -> None:
    with pytest.raises(InvalidRequest) as info:
        latents_to_preview(torch.zeros(1, 4, 8, 8), "flux")
    assert info.value.field == "family"
    with pytest.raises(InvalidRequest) as info:
        latents_to_preview(torch.zeros(1, 16, 8, 8), "sd15")
    assert info.value.field == "latents"
    with pytest.raises(InvalidRequest):
        latents_to_preview(np.zeros((4, 8, 8)), "sd15")  # type: ignore[arg-type]
