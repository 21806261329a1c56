from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.engine.compositing import color_match
from backend.engine.errors import InvalidRequest


def _scene(size: int = 96) -> np.ndarray:
    """A textured mid-tone RGBA picture (no clipping once shifted by +40 / -20)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rgb = np.stack([90 + 60 * xx / size, 80 + 50 * yy / size, 120 + 30 * np.sin(xx / 9)], axis=2)
    rgb += rng.normal(0, 6, rgb.shape)
    image = np.empty((size, size, 4), np.uint8)
    image[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    image[..., 3] = 255
    return image


def _selection(size: int = 96) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 5, 255, -1)
    return mask


def fake_generator(original: np.ndarray) -> np.ndarray:
    """A deterministic 'model' with a colour cast: +40 red, -20 blue everywhere."""
    shifted = original[..., :3].astype(np.int16)
    shifted[..., 0] += 40
    shifted[..., 2] -= 20
    return np.clip(shifted, 0, 255).astype(np.uint8)


def _ring(mask: np.ndarray, width: int = 8) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(mask, kernel).astype(bool) & (mask == 0)


@pytest.mark.parametrize(("space", "tolerance"), [("lab", 4.0), ("rgb", 1.0)])
def test_color_match_removes_a_colour_cast(space: str, tolerance: float) -> None:
    original, mask = _scene(), _selection()
    generated = fake_generator(original)
    before = generated.astype(float) - original[..., :3]
    assert abs(before[..., 0].mean() - 40) < 1 and abs(before[..., 2].mean() + 20) < 1
    matched = color_match(generated, original, mask, space=space)
    error = matched.astype(float) - original[..., :3]
    for region in (_ring(mask), mask > 0):
        mean_error = np.abs(error[region].mean(axis=0))
        assert np.all(mean_error < tolerance), mean_error
    # detail survives: the picture is not flattened to its mean colour
    assert matched[..., 1].std() > 0.8 * original[..., 1].std()


def test_color_match_strength_blends() -> None:
    original, mask = _scene(), _selection()
    generated = fake_generator(original)
    half = color_match(generated, original, mask, strength=0.5)
    red_shift = (half[..., 0].astype(float) - original[..., 0]).mean()
    assert 12 < red_shift < 28
    assert np.array_equal(color_match(generated, original, mask, strength=0.0), generated)


def test_color_match_ignores_unknown_pixels_and_falls_back() -> None:
    original, mask = _scene(), _selection()
    generated = fake_generator(original)
    original_cut = original.copy()
    original_cut[..., 3] = 0  # transparent everywhere except a far corner
    original_cut[:12, :12, 3] = 255
    matched = color_match(generated, original_cut, mask)
    corner_error = (matched[:12, :12].astype(float) - original[:12, :12, :3]).mean(axis=(0, 1))
    assert np.all(np.abs(corner_error) < 4.0), corner_error


def test_color_match_without_known_pixels_is_a_no_op() -> None:
    original, mask = _scene(), _selection()
    generated = fake_generator(original)
    original[..., 3] = 0
    assert np.array_equal(color_match(generated, original, mask), generated)
    everything = np.full(mask.shape, 255, np.uint8)
    assert np.array_equal(color_match(generated, _scene(), everything), generated)


def test_color_match_keeps_rgba_alpha() -> None:
    original, mask = _scene(), _selection()
    generated = np.dstack([fake_generator(original), np.full(mask.shape, 77, np.uint8)])
    out = color_match(generated, original, mask)
    assert out.shape == generated.shape and np.all(out[..., 3] == 77)


def test_color_match_rejects_bad_input() -> None:
    original, mask = _scene(), _selection()
    generated = fake_generator(original)
    with pytest.raises(InvalidRequest) as info:
        color_match(generated, original, mask[:50])
    assert info.value.field == "mask"
    with pytest.raises(InvalidRequest) as info:
        color_match(generated, original[:50], mask)
    assert info.value.field == "original"
    with pytest.raises(InvalidRequest) as info:
        color_match(generated.astype(np.float32), original, mask)
    assert info.value.field == "generated"
    with pytest.raises(InvalidRequest, match="space"):
        color_match(generated, original, mask, space="hsv")
    with pytest.raises(InvalidRequest) as info:
        color_match(generated, original, mask, denoise=np.zeros((3, 3), np.float32))
    assert info.value.field == "denoise"
    with pytest.raises(InvalidRequest, match="strength"):
        color_match(generated, original, mask, strength=2.0)
