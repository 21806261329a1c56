"""Depth control: a local transformers depth model in models_dir/depth/, found and used by the
engine; without one, "depth" is not offered as a preprocessor and asking for it is refused."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from dpt_helpers import write_tiny_dpt  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import InvalidRequest, ModelLoadError  # noqa: E402
from backend.engine.types import ControlInput, EngineConfig, GenerationRequest  # noqa: E402

W = H = 64


@pytest.fixture(scope="module")
def depth_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("depth-models")
    write_tiny_dpt(root / "depth" / "tiny-dpt")
    return root


def make_engine(models_dir: Path | None, tiny_models_dir: Path) -> Engine:
    config = EngineConfig(
        models_dir=None if models_dir is None else str(models_dir),
        device="cpu",
        dtype="float32",
        tiny_dir=str(tiny_models_dir),
    )
    return Engine(config)


def scene() -> np.ndarray:
    image = np.full((H, W, 4), 255, np.uint8)
    image[16:48, 8:40, :3] = (200, 60, 30)
    image[24:56, 30:60, :3] = (20, 90, 200)
    return image


def depth_map() -> ControlInput:
    """A depth control to be estimated from the picture (preprocess on)."""
    return ControlInput("depth", scene())


def request(**changes: object) -> GenerationRequest:
    base: dict = {
        "mode": "txt2img",
        "width": W,
        "height": H,
        "prompt": "a room",
        "steps": 2,
        "seed": 5,
        "model": "tiny",
        "sampler": "euler",
    }
    base.update(changes)
    return GenerationRequest(**base)


def test_depth_model_is_found_loaded_once_and_used(
    depth_models_dir: Path, tiny_models_dir: Path
) -> None:
    engine = make_engine(depth_models_dir, tiny_models_dir)
    # 1. Offered, and the estimator is loaded once.
    assert "depth" in engine.preprocessors()
    estimator = engine.models.depth_estimator()
    assert estimator is not None and engine.models.depth_estimator() is estimator
    # 2. The preprocess route: an opaque grey map over the full range.
    depth = engine.preprocess("depth", scene())
    assert depth.shape == (H, W, 4) and (depth[..., 3] == 255).all()
    assert np.array_equal(depth[..., 0], depth[..., 1])
    assert depth[..., 0].min() == 0 and depth[..., 0].max() == 255
    # 3. A depth control made from the picture steers the generation.
    plain = engine.generate(request())[0].image.astype(int)
    steered = engine.generate(request(controls=[ControlInput("depth", scene())]))[0]
    assert np.abs(steered.image.astype(int) - plain).mean() > 0.5
    assert steered.metadata.controls[0]["type"] == "depth"


def test_without_a_depth_model_depth_is_not_offered(tiny_models_dir: Path, tmp_path: Path) -> None:
    engine = make_engine(tmp_path, tiny_models_dir)
    assert engine.models.depth_estimator() is None
    assert "depth" not in engine.preprocessors()
    assert {"canny", "scribble", "lineart"} <= set(engine.preprocessors())
    # Asking for depth estimation is refused before anything is queued or loaded ...
    with pytest.raises(InvalidRequest) as info:
        engine.check_request(request(controls=[ControlInput("canny", scene()), depth_map()]))
    assert info.value.field == "controls[1].preprocess"
    assert "models/depth/" in info.value.message
    assert engine.loaded_model is None
    with pytest.raises(InvalidRequest):
        engine.preprocess("depth", scene())
    # ... while a ready depth map (preprocess off) is fine.
    ready = ControlInput("depth", scene(), preprocess=False)
    assert engine.generate(request(controls=[ready]))[0].image.shape == (H, W, 4)


def test_a_broken_depth_model_gives_a_clear_error(tiny_models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "depth" / "broken"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{ not json")
    engine = make_engine(tmp_path, tiny_models_dir)
    assert "depth" in engine.preprocessors()
    with pytest.raises(ModelLoadError, match="broken"):
        engine.preprocess("depth", scene())
