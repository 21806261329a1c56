from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.engine.errors import InvalidRequest
from backend.engine.geometry import Box, context_box, native_size, selection_bounds


def test_box_edges_area_and_translate() -> None:
    box = Box(3, 4, 10, 20)
    assert (box.right, box.bottom, box.area) == (13, 24, 200)
    assert box.translate(-3, 6) == Box(0, 10, 10, 20)


def test_box_intersect_and_clip() -> None:
    a = Box(0, 0, 10, 10)
    assert a.intersect(Box(5, 5, 10, 10)) == Box(5, 5, 5, 5)
    assert a.intersect(Box(10, 0, 5, 5)) is None  # touching edges do not overlap
    assert Box(-5, -5, 20, 8).clip(12, 12) == Box(0, 0, 12, 3)
    assert Box(20, 20, 4, 4).clip(12, 12) is None


def test_selection_bounds_tight() -> None:
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 5:31] = 255
    mask[25, 40] = 3
    assert selection_bounds(mask) == Box(5, 10, 36, 16)
    assert selection_bounds(mask, threshold=3) == Box(5, 10, 26, 10)


def test_selection_bounds_empty_is_none() -> None:
    assert selection_bounds(np.zeros((8, 8), np.uint8)) is None


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8), np.uint8), [1]],
)
def test_selection_bounds_rejects_bad_masks(bad: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        selection_bounds(bad)  # type: ignore[arg-type]
    assert info.value.field == "mask"


def test_context_box_auto_scales_with_selection() -> None:
    small = context_box(Box(500, 500, 20, 20), 2000, 2000)
    assert small == Box(468, 468, 84, 84)  # at least 32 px
    medium = context_box(Box(500, 500, 64, 64), 2000, 2000)
    assert medium == Box(468, 468, 128, 128)  # 0.5x for small selections
    large = context_box(Box(400, 400, 1200, 1000), 2000, 2000)
    assert large == Box(220, 220, 1560, 1360)  # 0.15x of 1200 for large ones
    mid = context_box(Box(500, 500, 256, 256), 2000, 2000)
    margin = (256 - mid.width) // -2
    assert 0.15 * 256 < margin < 0.5 * 256


def test_context_box_explicit_and_clipped() -> None:
    assert context_box(Box(10, 10, 40, 20), 100, 100, context=0.5) == Box(0, 0, 70, 40)
    assert context_box(Box(10, 10, 40, 20), 100, 100, context=0.0) == Box(10, 10, 40, 20)
    assert context_box(Box(10, 10, 40, 20), 100, 100, 0.5, allow_outside=True) == Box(
        -10, 0, 80, 40
    )


def test_context_box_rejects_bad_input() -> None:
    with pytest.raises(InvalidRequest, match="inpaint.context"):
        context_box(Box(0, 0, 4, 4), 10, 10, context=-1.0)
    with pytest.raises(InvalidRequest, match="region_width"):
        context_box(Box(0, 0, 4, 4), 0, 10)
    with pytest.raises(InvalidRequest, match="bounds"):
        context_box(Box(50, 50, 4, 4), 10, 10)


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 8192),
    height=st.integers(1, 8192),
    native=st.sampled_from([512, 768, 1024]),
    multiple=st.sampled_from([8, 64]),
)
def test_native_size_invariants(width: int, height: int, native: int, multiple: int) -> None:
    out_w, out_h = native_size(width, height, native, multiple)
    assert out_w % multiple == 0 and out_h % multiple == 0
    assert out_w >= multiple and out_h >= multiple
    if min(width, height) * native / math.sqrt(width * height) >= 4 * multiple:
        # aspect kept within the rounding, area close to native²
        assert abs(out_w / out_h - width / height) / (width / height) < 0.25
        assert 0.75 < (out_w * out_h) / native**2 < 1.3


def test_native_size_examples() -> None:
    assert native_size(512, 512, 512) == (512, 512)
    assert native_size(100, 100, 512) == (512, 512)  # small crops are enlarged
    assert native_size(2048, 1024, 1024, 64) == (1472, 704)
    with pytest.raises(InvalidRequest, match="width"):
        native_size(0, 10, 512)
