"""``diffusion-layers generate --mode edit --reference FILE`` and ``--mode layers --layers N``:
the arguments become the request, and the results are written (layers bottom first, one
composite of them all), through the real Engine with the test families of edit_family.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edit_family import EDIT_CALLS, FakeModels, edit_families  # noqa: F401
from PIL import Image

from backend.cli import build_parser, main
from backend.commands.generate import build_request, write_results
from backend.engine.engine import Engine
from backend.engine.metadata import read_png_metadata
from backend.engine.types import EngineConfig

W, H = 96, 64
pytestmark = pytest.mark.usefixtures("edit_families")


def inputs(folder: Path) -> tuple[Path, Path]:
    yy, xx = np.mgrid[0:H, 0:W]
    region = np.zeros((H, W, 4), np.uint8)
    region[..., 0], region[..., 1], region[..., 2], region[..., 3] = xx * 2, yy * 3, 90, 255
    reference = np.zeros((20, 30, 3), np.uint8)
    reference[..., 2] = 255
    paths = folder / "region.png", folder / "ref.png"
    Image.fromarray(region, "RGBA").save(paths[0])
    Image.fromarray(reference, "RGB").save(paths[1])
    return paths


def run(argv: list[str]) -> tuple[list[Path], object]:
    args = build_parser().parse_args(argv)
    request = build_request(args)
    engine = Engine(EngineConfig(device="cpu", dtype="float32"), models=FakeModels())
    return write_results(args, request, engine.generate(request)), request


def test_edit_with_a_reference_file(tmp_path: Path) -> None:
    region, reference = inputs(tmp_path)
    written, request = run(
        ["generate", "--model", "edit-test", "--mode", "edit", "--image", str(region),
         "--reference", str(reference), "--prompt", "make it blue", "--steps", "2",
         "--out", str(tmp_path / "o.png")]
    )  # fmt: skip
    assert written == [tmp_path / "o.png"]
    assert EDIT_CALLS[0].references[0].shape == (20, 30, 3)  # its own size
    assert EDIT_CALLS[0].prompt == "make it blue"


def test_layers_write_one_file_per_layer_and_one_composite(tmp_path: Path) -> None:
    region, _ = inputs(tmp_path)
    written, _ = run(
        ["generate", "--model", "layers-test", "--mode", "layers", "--layers", "3",
         "--image", str(region), "--prompt", "", "--steps", "2",
         "--out", str(tmp_path / "l.png"), "--composite", str(tmp_path / "c.png")]
    )  # fmt: skip
    names = sorted(path.name for path in written)
    assert names == ["c.png", "l-1.png", "l-2.png", "l.png"]
    meta = read_png_metadata((tmp_path / "l-2.png").read_bytes())
    assert '"layer_index": 2' in meta["diffusion_layers"]
    merged = np.asarray(Image.open(tmp_path / "c.png").convert("RGBA")).astype(int)
    original = np.asarray(Image.open(region).convert("RGBA")).astype(int)
    assert np.abs(merged - original).mean() < 3


def test_reference_outside_edit_is_one_clear_line(tmp_path: Path, capsys) -> None:
    region, reference = inputs(tmp_path)
    code = main(
        ["generate", "--model", "x", "--mode", "img2img", "--image", str(region),
         "--reference", str(reference), "--prompt", "x", "--out", str(tmp_path / "o.png")]
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --reference: only --mode edit takes reference images"
    )
