from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from dpt_helpers import write_tiny_dpt

from backend.engine.errors import InvalidRequest, ModelNotFound
from backend.engine.preprocess import PREPROCESSORS, load_depth_estimator, preprocess
from backend.protocol import CONTROL_TYPES, REFERENCE_TYPES

SIZE = 64


def _sketch(line: int, paper: int) -> np.ndarray:
    """An RGBA sketch: a cross of 2 px lines of grey level ``line`` on opaque ``paper``."""
    image = np.full((SIZE, SIZE, 4), paper, np.uint8)
    image[..., 3] = 255
    image[31:33, 8:56, :3] = line
    image[8:56, 31:33, :3] = line
    return image


def _lines_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[31:33, 8:56] = True
    mask[8:56, 31:33] = True
    return mask


def _check_white_on_black(out: np.ndarray, soft: bool = False) -> None:
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 2])  # grey map
    lines = _lines_mask()
    assert out[lines].mean() > (150 if soft else 200)
    far = np.ones_like(lines)
    far[4:60, 4:60] = False
    assert out[far].max() < 20  # background black


def test_every_protocol_control_type_has_a_preprocessor() -> None:
    # Reference images (IP-Adapter) take the layer as it is: no control map to make.
    assert set(PREPROCESSORS) == set(CONTROL_TYPES) - set(REFERENCE_TYPES)


@pytest.mark.parametrize("control_type", ["scribble", "lineart", "softedge"])
@pytest.mark.parametrize(
    ("line", "paper"),
    [(0, 255), (40, 230), (255, 0), (220, 20)],
    ids=["dark", "grey", "light", "dim"],
)
def test_sketch_normalised_for_both_polarities(control_type: str, line: int, paper: int) -> None:
    out = preprocess(control_type, _sketch(line, paper))
    _check_white_on_black(out, soft=control_type == "softedge")
    if control_type == "scribble":
        assert set(np.unique(out)) <= {0, 255}


@pytest.mark.parametrize("control_type", ["scribble", "lineart", "softedge"])
@pytest.mark.parametrize("line", [0, 255], ids=["dark-strokes", "white-strokes"])
def test_sketch_on_transparency(control_type: str, line: int) -> None:
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., :3] = 255 - line  # hidden colour under the transparency must not matter
    lines = _lines_mask()
    image[lines] = (line, line, line, 255)
    out = preprocess(control_type, image)
    _check_white_on_black(out, soft=control_type == "softedge")


def test_canny_edges_white_on_black() -> None:
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., 3] = 255
    image[16:48, 16:48, :3] = 200
    out = preprocess("canny", image)
    assert out.shape == (SIZE, SIZE, 3)
    assert out[16:48, 15:17].max() == 255 or out[16:48, 16:18].max() == 255
    assert out[30, 30].max() == 0 and out[2, 2].max() == 0
    with pytest.raises(InvalidRequest, match="low"):
        preprocess("canny", image, low=-5)


def test_canny_thresholds_change_the_result() -> None:
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., 3] = 255
    image[:, 32:, :3] = 40  # a weak edge
    assert preprocess("canny", image, low=10, high=20).max() == 255
    assert preprocess("canny", image, low=400, high=800).max() == 0


def test_normal_and_pose_pass_through_over_black() -> None:
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., :3] = (128, 128, 255)
    image[:32, :, 3] = 255
    for control_type in ("normal", "pose"):
        out = preprocess(control_type, image)
        assert np.array_equal(out[:32], image[:32, :, :3])
        assert out[32:].max() == 0


def test_tile_is_the_image_over_white_lightly_blurred() -> None:
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., :3] = 90
    image[:, :32, 3] = 255
    out = preprocess("tile", image)
    assert abs(int(out[32, 8, 0]) - 90) <= 1 and out[32, 60, 0] >= 254
    assert 90 < out[32, 32, 0] < 255  # edge softened by the blur


def test_depth_uses_the_estimator_and_normalises() -> None:
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[..., 3] = 255
    seen: list[tuple[int, ...]] = []

    def estimator(rgb: np.ndarray) -> np.ndarray:
        seen.append(rgb.shape)
        yy = np.mgrid[0:32, 0:32][0].astype(np.float32)
        return yy * 3.0 + 7.0  # half resolution: must be resized

    out = preprocess("depth", image, depth_estimator=estimator)
    assert seen == [(SIZE, SIZE, 3)]
    assert out.shape == (SIZE, SIZE, 3)
    assert out[0].max() <= 5 and out[-1].min() >= 250
    assert np.all(np.diff(out[:, 10, 0].astype(int)) >= 0)


def test_depth_without_estimator_says_what_to_do() -> None:
    with pytest.raises(InvalidRequest) as info:
        preprocess("depth", np.zeros((8, 8, 4), np.uint8))
    assert info.value.field == "controls[].preprocess"
    assert "models/depth/" in info.value.message


def test_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        preprocess("lineart", _sketch(0, 255), threshold=0.3)
    assert info.value.field == "controls[].threshold"


def test_unknown_type_and_bad_image() -> None:
    with pytest.raises(InvalidRequest) as info:
        preprocess("hed", np.zeros((8, 8, 4), np.uint8))
    assert info.value.field == "controls[].type" and "hed" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        preprocess("canny", np.zeros((8, 8), np.uint8))
    assert info.value.field == "image"


def test_load_depth_estimator_missing_folder(tmp_path: object) -> None:
    with pytest.raises(ModelNotFound):
        load_depth_estimator(os.path.join(str(tmp_path), "nothing"), "cpu")


def test_load_depth_estimator_tiny_local_dpt(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = str(tmp_path)
    write_tiny_dpt(Path(folder))
    estimator = load_depth_estimator(folder, "cpu")
    image = np.zeros((40, 48, 4), np.uint8)
    image[..., 3] = 255
    cv2.circle(image, (24, 20), 10, (255, 200, 100, 255), -1)
    depth = estimator(image[..., :3].copy())
    assert depth.dtype == np.float32 and depth.ndim == 2 and np.isfinite(depth).all()
    assert np.array_equal(depth, estimator(image[..., :3].copy()))  # deterministic
    out = preprocess("depth", image, depth_estimator=estimator)
    assert out.shape == (40, 48, 3) and out.dtype == np.uint8
    assert out.max() == 255 and out.min() == 0  # normalised over the full range
