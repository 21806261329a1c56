"""Masks mean what an artist means (issue 13, kind 3): export noise is not a selection, the
feather never swallows a small selection, and edges, lines, single pixels and soft selections
behave. Through the real engine with the tiny model, plus the mask functions themselves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.engine.compositing import flatten
from backend.engine.engine import Engine
from backend.engine.errors import InvalidRequest
from backend.engine.masks import NOISE_LEVEL, clean_selection, composite_alpha
from backend.engine.types import EngineConfig, GenerationRequest

SIZE = 128


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return Engine(config)


def region(seed: int = 1) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image = np.empty((SIZE, SIZE, 4), np.uint8)
    image[..., 0] = 40 + xx
    image[..., 1] = 200 - yy
    image[..., 2] = (xx * yy + seed) % 97 + 60
    image[..., 3] = 255
    return image


def inpaint(engine: Engine, mask: np.ndarray, image: np.ndarray | None = None):
    request = GenerationRequest(
        mode="inpaint",
        width=SIZE,
        height=SIZE,
        prompt="moss",
        model="tiny",
        image=region() if image is None else image,
        mask=mask,
        steps=2,
        sampler="euler",
        seed=7,
    )
    (layer,) = engine.generate(request)
    return request.image, layer


def placed_alpha(layer) -> np.ndarray:
    alpha = np.zeros((SIZE, SIZE), np.uint8)
    h, w = layer.image.shape[:2]
    alpha[layer.y : layer.y + h, layer.x : layer.x + w] = layer.image[..., 3]
    return alpha


def test_export_noise_is_not_a_selection(engine: Engine) -> None:
    """The issue's example: a white 32x32 square on random 1..3 (JPEG/export noise)."""
    rng = np.random.default_rng(0)
    mask = rng.integers(1, 4, size=(SIZE, SIZE), dtype=np.uint8)
    mask[48:80, 48:80] = 255
    image, layer = inpaint(engine, mask)
    assert (layer.x, layer.y, layer.image.shape[1], layer.image.shape[0]) == (48, 48, 32, 32)
    merged = flatten(image, layer.image, layer.x, layer.y)
    outside = np.ones((SIZE, SIZE), bool)
    outside[48:80, 48:80] = False
    assert np.array_equal(merged[outside], image[outside])  # not one level moved
    assert placed_alpha(layer)[56:72, 56:72].min() == 255


@pytest.mark.parametrize(
    ("name", "box"),
    [
        ("2x2", (60, 60, 2, 2)),
        ("1 px", (30, 90, 1, 1)),
        ("1 px line", (20, 10, 1, 40)),
        ("2 px line", (70, 100, 50, 2)),
        ("corner 16x16 at the region's edge", (0, 0, 16, 16)),
        ("edge line", (0, 127, 128, 1)),
    ],
)
def test_small_thin_and_edge_selections_reach_full_alpha(engine: Engine, name: str, box) -> None:
    x, y, w, h = box
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y : y + h, x : x + w] = 255
    image, layer = inpaint(engine, mask)
    assert (layer.x, layer.y, layer.image.shape[1], layer.image.shape[0]) == box
    alpha = placed_alpha(layer)
    inner = alpha[y : y + h, x : x + w]
    if min(w, h) <= 2:
        assert inner.min() == 255, name  # every pixel of a thin piece is fully selected
    else:
        assert inner.max() == 255 and inner[h // 2, w // 2] == 255, name
    assert alpha[mask == 0].max() == 0
    merged = flatten(image, layer.image, layer.x, layer.y)
    assert not np.array_equal(merged[y : y + h, x : x + w], image[y : y + h, x : x + w])


def test_soft_selection_stays_soft_and_continuous(engine: Engine) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[32:96, 32:96] = 128  # a half-strength selection
    mask[40:48, 40:48] = NOISE_LEVEL + 12  # faint, above the noise level
    mask[80:88, 80:88] = NOISE_LEVEL  # at the noise level: unselected
    _, layer = inpaint(engine, mask)
    alpha = placed_alpha(layer)
    assert alpha[60:70, 60:70].min() == 128  # 128 stays 128 away from the edge
    assert 0 < alpha[43:45, 43:45].min() < 30
    assert alpha[82:86, 82:86].max() == 0


def test_mask_with_nothing_above_the_noise_level_is_refused(engine: Engine) -> None:
    rng = np.random.default_rng(1)
    mask = rng.integers(0, NOISE_LEVEL + 1, size=(SIZE, SIZE), dtype=np.uint8)
    request = GenerationRequest(
        mode="inpaint", width=SIZE, height=SIZE, model="tiny", image=region(), mask=mask
    )
    with pytest.raises(InvalidRequest, match="^mask=.*nothing is selected") as info:
        engine.check_request(request)
    assert info.value.field == "mask"


def test_clean_selection_keeps_values_and_feather_tails_but_drops_noise() -> None:
    hard = np.zeros((300, 300), np.uint8)
    hard[60:240, 60:240] = 255
    rng = np.random.default_rng(2)
    noise = rng.integers(1, NOISE_LEVEL + 1, size=hard.shape, dtype=np.uint8)
    # A hard edge on noise: exactly the shape; any level above the noise stays as it is.
    for level in (255, 128, NOISE_LEVEL + 1):
        mask = np.maximum(np.where(hard > 0, level, 0), noise).astype(np.uint8)
        mask[hard == 0] = noise[hard == 0]
        assert np.array_equal(clean_selection(mask), np.where(hard > 0, level, 0))
    # A Gaussian feather keeps every level of its tail, 1 .. 8 included (value = alpha).
    for sigma in (1.5, 4, 13, 30):
        soft = cv2.GaussianBlur(hard, (0, 0), sigma)
        assert np.array_equal(clean_selection(soft), soft), sigma
    # Noise next to a feather survives only within half the feather's band of it.
    soft = cv2.GaussianBlur(hard, (0, 0), 8)
    noisy = np.maximum(soft, noise)
    cleaned = clean_selection(noisy)
    assert np.array_equal(cleaned[soft > 0], noisy[soft > 0])  # the whole feather is kept
    assert cleaned[:20].max() == 0 and cleaned[:, :20].max() == 0  # far noise dropped
    assert np.array_equal(clean_selection(noise), np.zeros_like(noise))  # nothing selected


def test_feather_is_capped_by_the_selection_depth() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:12, 10:12] = 255  # 2x2
    mask[30:34, 5:60] = 255  # a 4 px stroke
    mask[40:64, 40:64] = 255  # a big piece at the corner
    alpha = composite_alpha(mask, 6)
    assert alpha[10:12, 10:12].min() == 1.0
    assert alpha[31:33, 20].min() == 1.0 and 0 < alpha[30, 20] < 1.0  # ramps over its depth
    assert 0 < alpha[40, 50] < 0.2 and alpha[50, 50] == 1.0  # big pieces keep the full ramp
    assert alpha[mask == 0].max() == 0.0
