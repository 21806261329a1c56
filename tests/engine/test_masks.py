from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.engine.errors import InvalidRequest
from backend.engine.geometry import Box
from backend.engine.masks import composite_alpha, denoise_mask, mask_params


def _disc(size: int = 96, radius: int = 24, value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, value, -1)
    return mask


def test_mask_params_scale_with_selection() -> None:
    small = mask_params(Box(0, 0, 64, 64), None, None, None)
    large = mask_params(Box(0, 0, 512, 512), None, None, None)
    assert small == (4, 4, 2)
    assert large == (26, 20, 15)
    assert mask_params(Box(0, 0, 5000, 5000), None, None, None) == (48, 32, 24)


def test_mask_params_keep_explicit_values_and_check_them() -> None:
    assert mask_params(Box(0, 0, 64, 64), 0, 7, 0) == (0, 7, 0)
    with pytest.raises(InvalidRequest, match="inpaint.blur"):
        mask_params(Box(0, 0, 64, 64), 1, -3, 1)


def test_denoise_mask_grows_past_the_edge_and_covers_the_selection() -> None:
    mask = _disc()
    out = denoise_mask(mask, grow=8, blur=4)
    assert out.dtype == np.float32 and out.shape == mask.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(out[mask == 255] == 1.0)  # the selection is always fully repainted
    # 4 px outside the disc edge (inside the grow): still strongly repainted
    assert out[48, 48 + 24 + 4] > 0.9
    # far away: untouched
    assert out[0, 0] == 0.0
    # and a soft ramp between
    ramp = out[48, 48 + 24 : 48 + 24 + 20]
    assert np.any((ramp > 0.05) & (ramp < 0.95))


def test_composite_alpha_exactly_zero_outside_the_selection() -> None:
    mask = _disc()
    mask[10, 10] = 255  # a lone selected pixel
    alpha = composite_alpha(mask, feather=6)
    assert alpha.dtype == np.float32
    assert np.all(alpha[mask == 0] == 0.0)
    assert alpha[48, 48] == 1.0  # centre fully opaque
    # feathered inside: pixels at the edge are partly transparent
    edge = alpha[48, 48 + 22]
    assert 0.0 < edge < 1.0
    assert alpha[10, 10] > 0.0  # even one pixel is not lost entirely


def test_composite_alpha_soft_selection_gives_soft_alpha() -> None:
    hard = _disc()
    soft = cv2.GaussianBlur(hard, (0, 0), 4)
    alpha = composite_alpha(soft, feather=0)
    assert np.all(alpha[soft == 0] == 0.0)
    between = alpha[(soft > 20) & (soft < 230)]
    assert between.size > 0 and np.all((between > 0.0) & (between < 1.0))
    half = composite_alpha(np.full((16, 16), 128, np.uint8), feather=4)
    assert np.allclose(half, 128 / 255)  # a flat half selection: half alpha everywhere


def test_composite_alpha_of_a_feathered_selection_is_its_value_once() -> None:
    """Krita's Feather 40 on a 300 px square: alpha = v (±1 level), never ramp x v."""
    hard = np.zeros((460, 460), np.uint8)
    hard[80:380, 80:380] = 255
    soft = cv2.GaussianBlur(hard, (0, 0), 13)
    alpha = composite_alpha(soft, feather=11)
    diff = np.abs(np.round(alpha * 255) - soft.astype(np.float64))
    assert diff.max() <= 1, diff.max()
    assert np.round(composite_alpha(np.full((8, 8), 129, np.uint8), 4) * 255).max() == 129


def test_composite_alpha_does_not_feather_the_image_border() -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :16] = 255  # selection touching the crop border on three sides
    alpha = composite_alpha(mask, feather=4)
    assert alpha[16, 0] == 1.0 and alpha[0, 0] == 1.0
    assert alpha[16, 15] < 1.0


@pytest.mark.parametrize(
    ("mask", "field"),
    [
        (np.zeros((8, 8, 1), np.uint8), "mask"),
        (np.zeros((8, 8), np.int32), "mask"),
        (np.zeros((0, 0), np.uint8), "mask"),
    ],
)
def test_masks_reject_bad_arrays(mask: np.ndarray, field: str) -> None:
    for function in (lambda m: denoise_mask(m, 1, 1), lambda m: composite_alpha(m, 1)):
        with pytest.raises(InvalidRequest) as info:
            function(mask)
        assert info.value.field == field


def test_masks_reject_bad_sizes() -> None:
    with pytest.raises(InvalidRequest, match="inpaint.grow"):
        denoise_mask(_disc(), grow=1000, blur=1)
    with pytest.raises(InvalidRequest, match="inpaint.feather"):
        composite_alpha(_disc(), feather=-1)
