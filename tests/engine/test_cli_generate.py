"""``diffusion-layers generate`` end to end with the tiny built-in models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.engine.metadata import read_png_metadata

ROOT = Path(__file__).resolve().parents[2]
W, H = 96, 64


def write_inputs(folder: Path) -> tuple[Path, Path, Path]:
    yy, xx = np.mgrid[0:H, 0:W]
    region = np.zeros((H, W, 4), np.uint8)
    region[..., 0] = xx * 2
    region[..., 1] = yy * 3
    region[..., 2] = 120
    region[..., 3] = 255
    mask = np.zeros((H, W), np.uint8)
    mask[16:48, 24:72] = 255
    sketch = np.full((H, W, 3), 255, np.uint8)
    sketch[20:44, 30:60] = 0
    paths = folder / "region.png", folder / "mask.png", folder / "sketch.png"
    Image.fromarray(region, "RGBA").save(paths[0])
    Image.fromarray(mask, "L").save(paths[1])
    Image.fromarray(sketch, "RGB").save(paths[2])
    return paths


def test_generate_writes_layers_and_composites(tmp_path: Path, tiny_models_dir: Path) -> None:
    # 1. The built-in tiny models come from the session's folder (no rebuild).
    cache = tmp_path / "cache"
    (cache / "diffusion-layers").mkdir(parents=True)
    (cache / "diffusion-layers" / "tiny-models").symlink_to(tiny_models_dir)
    region, mask, sketch = write_inputs(tmp_path)
    out, composite = tmp_path / "out" / "layer.png", tmp_path / "out" / "merged.png"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    command = [
        sys.executable, "-m", "backend", "generate", "--model", "tiny", "--mode", "inpaint",
        "--image", str(region), "--mask", str(mask), "--prompt", "a red ball",
        "--negative", "blurry", "--seed", "11", "--steps", "2", "--batch", "2",
        "--sampler", "euler", "--control", f"scribble:{sketch}::0.8",
        "--device", "cpu", "--dtype", "float32", "--out", str(out), "--composite", str(composite),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "random weights" in result.stderr  # the tiny-model note
    # 2. Layers: RGBA, the selection's size, offset and parameters in the metadata.
    second = tmp_path / "out" / "layer-1.png"
    for index, path in enumerate((out, second)):
        with Image.open(path) as image:
            assert image.mode == "RGBA" and image.size == (48, 32)
        text = read_png_metadata(path.read_bytes())
        assert "a red ball" in text["parameters"] and f"Seed: {11 + index}" in text["parameters"]
        payload = json.loads(text["diffusion_layers"])
        assert payload["offset"] == {"x": 24, "y": 16}
        assert payload["metadata"]["seed"] == 11 + index
        assert payload["metadata"]["controls"][0]["type"] == "scribble"
    # 3. Composites: the region with the layer merged, untouched outside the selection.
    original = np.asarray(Image.open(region).convert("RGBA"))
    merged = np.asarray(Image.open(composite).convert("RGBA"))
    assert merged.shape == (H, W, 4)
    outside = np.asarray(Image.open(mask)) == 0
    assert np.array_equal(merged[outside], original[outside])
    assert not np.array_equal(merged[24:40, 32:64], original[24:40, 32:64])
    assert (tmp_path / "out" / "merged-1.png").is_file()
    assert result.stdout.split() == [
        str(out),
        str(composite),
        str(second),
        str(tmp_path / "out" / "merged-1.png"),
    ]


def test_missing_mask_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    region, _, _ = write_inputs(tmp_path)
    code = main(
        ["generate", "--model", "tiny", "--mode", "inpaint", "--image", str(region),
         "--prompt", "x", "--out", str(tmp_path / "o.png")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: --mode inpaint needs --mask"]
    assert not (tmp_path / "o.png").exists()


def test_bad_parameter_is_named(
    tmp_path: Path,
    tiny_models_dir: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    (cache / "diffusion-layers").mkdir(parents=True)
    (cache / "diffusion-layers" / "tiny-models").symlink_to(tiny_models_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    code = main(
        ["generate", "--model", "tiny", "--prompt", "x", "--steps", "0", "--width", "64",
         "--height", "64", "--device", "cpu", "--out", str(tmp_path / "o.png")]
    )  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[-1].startswith("error: steps=0")
    code = main(
        ["generate", "--model", "nope", "--prompt", "x", "--width", "64", "--height", "64",
         "--device", "cpu", "--out", str(tmp_path / "o.png")]
    )  # fmt: skip
    assert code == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_bad_control_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        ["generate", "--model", "tiny", "--prompt", "x", "--control", "canny:missing.png",
         "--out", str(tmp_path / "o.png")]
    )  # fmt: skip
    assert code == 2
    assert "TYPE:IMAGE" in capsys.readouterr().err
