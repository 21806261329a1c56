"""Upscale mode through the real ``Engine.generate`` path: exact sizes, alpha, the seam metric,
progress, cancel mid-tile, refine in place, and a tiny super-resolution model that spandrel
loads from ``models/upscale/`` (built in code here).

The model call (``Engine._denoise``) is a deterministic fake for the tiled tests: it returns
the tile's source plus a colour offset that differs per tile (what two independent denoises
of neighbouring tiles do), so any visible seam comes from the tiling, not the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import Cancelled, InvalidRequest  # noqa: E402
from backend.engine.pipelines import DenoiseTask, StepCallback  # noqa: E402
from backend.engine.tiles import crop_noise, noise_field, tile_layout  # noqa: E402
from backend.engine.types import (  # noqa: E402
    CancelToken,
    EngineConfig,
    GenerationRequest,
    Progress,
    UpscaleSettings,
)

#: The seam threshold (docs/upscale.md): the largest step across a tile border may exceed the
#: largest step inside the tiles by at most this many 8-bit levels.
SEAM_LIMIT = 1.0
TILE_OFFSET = 12  # the fake's colour difference between neighbouring tiles


class TileEngine(Engine):
    """The real engine; the denoiser returns source + an offset per tile position."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.tasks: list[DenoiseTask] = []
        self.steps_run = 0
        self.cancel_after: tuple[CancelToken, int] | None = None

    def _denoise(self, task: DenoiseTask, on_step: StepCallback) -> np.ndarray:
        self.tasks.append(task)
        for step in range(1, task.steps + 1):
            self.steps_run += 1
            if self.cancel_after is not None and self.steps_run == self.cancel_after[1]:
                self.cancel_after[0].cancel()
            on_step(step, task.steps, torch.zeros(1, 4, task.height // 8, task.width // 8))
        source = (
            task.image if task.image is not None else np.full((task.height, task.width, 3), 100)
        )
        offset = TILE_OFFSET * (len(self.tasks) % 2)  # neighbours differ
        out = np.clip(source.astype(np.int32) + offset, 0, 255)
        return np.repeat(out[None], len(task.seeds), axis=0).astype(np.uint8)


@pytest.fixture()
def engine(tiny_models_dir: Path) -> TileEngine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return TileEngine(config)


def gradient(width: int, height: int, alpha: np.ndarray | None = None) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 4), np.uint8)
    image[..., 0] = 40 + 150 * xx / width
    image[..., 1] = 30 + 120 * yy / height
    image[..., 2] = 90 + 60 * (xx + yy) / (width + height)
    image[..., 3] = 255 if alpha is None else alpha
    return image


def upscale(image: np.ndarray, **settings: object) -> GenerationRequest:
    extra = {key: settings.pop(key) for key in ("mask", "steps", "strength") if key in settings}
    return GenerationRequest(
        mode="upscale",
        width=image.shape[1],
        height=image.shape[0],
        image=image,
        prompt="detail",
        seed=7,
        steps=int(extra.pop("steps", 2)),  # type: ignore[arg-type]
        strength=float(extra.pop("strength", 0.5)),  # type: ignore[arg-type]
        upscale=UpscaleSettings(**settings),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("size", "factor", "expected"),
    [((1000, 700), 2.0, (2000, 1400)), ((333, 201), 1.5, (500, 302)), ((97, 61), 3.3, (320, 201))],
)
def test_exact_output_sizes(
    engine: TileEngine, size: tuple[int, int], factor: float, expected: tuple[int, int]
) -> None:
    [layer] = engine.generate(upscale(gradient(*size), factor=factor))
    assert (layer.width, layer.height, layer.x, layer.y) == (*expected, 0, 0)


def test_alpha_is_scaled_not_lost(engine: TileEngine) -> None:
    alpha = np.zeros((60, 80), np.uint8)
    alpha[:, 40:] = 255
    alpha[20:40, 10:30] = 128
    [layer] = engine.generate(upscale(gradient(80, 60, alpha), factor=2.0, refine=True))
    out = layer.image[..., 3]
    assert out.shape == (120, 160)
    assert out[:, :12].max() == 0 and out[:, 90:].min() == 255  # transparent/opaque kept
    assert abs(int(out[60, 40]) - 128) <= 2  # the half-transparent patch stays half


def seam_steps(image: np.ndarray, borders: list[int]) -> tuple[float, float]:
    """(largest step across the given column borders' overlap, largest step elsewhere)."""
    steps = np.abs(np.diff(image[..., :3].astype(np.float32), axis=1)).max(axis=(0, 2))
    near = np.zeros(steps.shape, bool)
    for border in borders:
        near[max(0, border - 80) : border + 80] = True
    return float(steps[near].max()), float(steps[~near].max())


def test_seams_are_invisible(engine: TileEngine) -> None:
    image = gradient(600, 200)
    [layer] = engine.generate(upscale(image, factor=1.0, refine=True, tile_size=256))
    tiles = tile_layout(600, 200, 256, 32)
    assert len(tiles) >= 3  # the fake made neighbours differ by TILE_OFFSET
    borders = sorted({t.x for t in tiles if t.x} | {t.x + t.width for t in tiles} - {600})
    across, inside = seam_steps(layer.image, borders)
    assert across <= inside + SEAM_LIMIT, (across, inside)
    # Without feathering the step would be the whole offset: the metric can fail.
    hard = layer.image.copy()
    hard[:, borders[0] :, :3] = np.clip(hard[:, borders[0] :, :3].astype(int) + TILE_OFFSET, 0, 255)
    assert seam_steps(hard, borders)[0] > inside + SEAM_LIMIT


def test_progress_counts_every_tile_step_and_is_monotonic(engine: TileEngine) -> None:
    seen: list[Progress] = []
    request = upscale(gradient(300, 200), factor=2.0, refine=True, tile_size=256, steps=3)
    planned = engine.planned_steps(request)
    engine.generate(request, seen.append)
    tiles = len(engine.tasks)
    assert tiles > 1 and planned == tiles * 3
    steps = [progress.step for progress in seen]
    assert steps == sorted(steps) and steps[-1] == planned
    assert {progress.total for progress in seen} == {planned}
    assert any(p.preview is not None and p.preview.ndim == 3 for p in seen)


def test_cancel_stops_mid_tile_within_one_step(engine: TileEngine) -> None:
    cancel = CancelToken()
    engine.cancel_after = (cancel, 5)  # the second tile's third step (2 steps... 3 per tile)
    request = upscale(gradient(300, 200), factor=2.0, refine=True, tile_size=256, steps=3)
    with pytest.raises(Cancelled):
        engine.generate(request, None, cancel)
    assert engine.steps_run == 5 and len(engine.tasks) == 2


def test_each_tile_gets_its_crop_of_one_noise_field(engine: TileEngine) -> None:
    engine.generate(upscale(gradient(300, 200), factor=1.0, refine=True, tile_size=128))
    field = noise_field(7, 4, 304, 200)
    for task in engine.tasks:
        assert task.noise is not None and task.kind == "img2img"
    first, second = engine.tasks[0], engine.tasks[1]
    assert first.noise is not None and second.noise is not None
    tiles = tile_layout(304, 200, 128, 16)
    assert torch.equal(first.noise, crop_noise(field, tiles[0]))
    assert torch.equal(second.noise, crop_noise(field, tiles[1]))
    # Where two tiles overlap, their noise is the same numbers.
    overlap = (tiles[0].x + tiles[0].width - tiles[1].x) // 8
    assert overlap > 0
    assert torch.equal(first.noise[..., -overlap:], second.noise[..., :overlap])


def test_refine_in_place_keeps_size_and_uses_the_selection(engine: TileEngine) -> None:
    image = gradient(400, 300)
    mask = np.zeros((300, 400), np.uint8)
    mask[100:200, 150:300] = 255
    mask[100:200, 150:160] = 100  # a soft edge
    [layer] = engine.generate(upscale(image, factor=1.0, refine=True, tile_size=128, mask=mask))
    assert (layer.width, layer.height) == (400, 300)
    assert np.array_equal(layer.image[..., 3], mask)
    assert np.array_equal(layer.image[:50, :, :3], image[:50, :, :3])  # outside the box: as is


def test_a_selection_needs_factor_one(engine: TileEngine) -> None:
    mask = np.full((60, 80), 255, np.uint8)
    with pytest.raises(InvalidRequest) as caught:
        engine.check_request(upscale(gradient(80, 60), factor=2.0, refine=True, mask=mask))
    assert caught.value.field == "upscale.factor"


def compact_weights(scale: int = 2, features: int = 8, convs: int = 2) -> dict[str, torch.Tensor]:
    """A Real-ESRGAN Compact (SRVGGNetCompact) state dict with few channels."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, features, 3, 1, 1), nn.PReLU(features)]
    for _ in range(convs):
        layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(features)]
    layers.append(nn.Conv2d(features, 3 * scale * scale, 3, 1, 1))
    body = nn.Sequential(*layers)
    return {f"body.{key}": value.contiguous() for key, value in body.state_dict().items()}


@pytest.fixture()
def upscale_models(tmp_path: Path, tiny_models_dir: Path) -> Path:
    from safetensors.torch import save_file

    folder = tmp_path / "models"
    (folder / "upscale").mkdir(parents=True)
    for kind in ("checkpoints",):
        (folder / kind).symlink_to(tiny_models_dir / kind)
    weights = compact_weights()
    torch.save(weights, folder / "upscale" / "2x-Tiny.pth")
    save_file(weights, str(folder / "upscale" / "2x-Tiny.safetensors"))
    torch.save({"model": nn.Linear(2, 2)}, folder / "upscale" / "pickled.pth")
    return folder


def test_spandrel_models_are_listed_and_run(upscale_models: Path, tiny_models_dir: Path) -> None:
    config = EngineConfig(
        models_dir=str(upscale_models), device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)
    )
    engine = TileEngine(config)
    listed = {entry.name: entry for entry in engine.inventory().upscalers}
    assert listed["2x-Tiny.pth"].scale == 2 and listed["2x-Tiny.pth"].problem is None
    assert listed["2x-Tiny.safetensors"].architecture == listed["2x-Tiny.pth"].architecture
    assert "--allow-pickle" in (listed["pickled.pth"].problem or "")
    image = gradient(90, 70)
    [layer] = engine.generate(upscale(image, factor=1.5, model="2x-Tiny.pth"))
    assert (layer.width, layer.height) == (135, 105)
    assert layer.image[..., 3].min() == 255
    with pytest.raises(InvalidRequest) as caught:
        engine.check_request(upscale(image, factor=2.0, model="pickled.pth"))
    assert caught.value.field == "upscale.model"


def test_refine_runs_the_real_tiny_model(tiny_models_dir: Path) -> None:
    """No fake: two tiles through the tiny SD1.5 img2img pipeline with the shared noise."""
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    engine = Engine(config)
    request = upscale(gradient(60, 40), factor=2.0, refine=True, tile_size=64, steps=2)
    request.model = "tiny"
    seen: list[Progress] = []
    [layer] = engine.generate(request, seen.append)
    assert (layer.width, layer.height) == (120, 80)
    assert seen[-1].step == seen[-1].total == engine.planned_steps(request)


def test_spandrel_import_leaves_no_torchvision_stub_behind() -> None:
    """transformers asks importlib for torchvision: a stub left in sys.modules made it fail."""
    import importlib.util
    import sys

    from backend.engine.upscalers import spandrel_module

    spandrel_module()
    stub = sys.modules.get("torchvision")
    assert stub is None or stub.__spec__ is not None
    importlib.util.find_spec("torchvision")  # must not raise


def test_refine_adds_the_tile_controlnet_when_installed(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    """A ``tile`` ControlNet in models/controlnet/ joins every refine tile (cropped like it)."""
    folder = tmp_path / "models"
    (folder / "controlnet").mkdir(parents=True)
    (folder / "checkpoints").symlink_to(tiny_models_dir / "checkpoints")
    [net] = sorted((tiny_models_dir / "controlnet").glob("tiny-controlnet.*"))
    (folder / "controlnet" / f"tiny-tile{net.suffix}").symlink_to(net)
    config = EngineConfig(
        models_dir=str(folder), device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)
    )
    engine = TileEngine(config)
    request = upscale(gradient(100, 80), factor=1.0, refine=True, tile_size=64)
    request.model = "tiny"
    engine.generate(request)
    assert len(engine.tasks) > 1
    for task in engine.tasks:
        [control] = task.controls
        assert control.image.shape == (task.height, task.width, 3)
        assert control.scale == 0.5
        assert task.image is not None  # the tile control sees the tile's own pixels
        diff = np.abs(control.image.astype(int) - task.image.astype(int)).max()
        assert diff <= 1, diff


def test_cli_upscale_writes_the_scaled_layer(tmp_path: Path) -> None:
    """``generate --mode upscale --factor 1.5 --refine`` writes a layer of the exact size."""
    from PIL import Image

    from backend.cli import main

    source = tmp_path / "in.png"
    image = gradient(97, 61)
    image[:, :20, 3] = 0
    Image.fromarray(image, "RGBA").save(source)
    out = tmp_path / "out.png"
    argv = ["generate", "--model", "tiny", "--mode", "upscale", "--image", str(source)]
    argv += ["--prompt", "detail", "--factor", "1.5", "--refine", "--strength", "0.5"]
    argv += ["--steps", "2", "--tile-size", "64", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    with Image.open(out) as result:
        assert result.size == (146, 92) and result.mode == "RGBA"
        alpha = np.asarray(result)[..., 3]
    assert alpha[:, :25].max() == 0 and alpha[:, 40:].min() == 255


def test_auto_tile_is_at_least_512_px_and_matches_the_plan(engine: TileEngine) -> None:
    """tile_size null on the tiny model (64 px native): 512 px tiles, not hundreds of 64 px
    ones, and the step count planned before the model loads is the one the run reports."""
    request = upscale(gradient(1200, 800), factor=1.0, refine=True)
    request.model = "tiny"
    planned = engine.planned_steps(request)
    seen: list[Progress] = []
    engine.generate(request, seen.append)
    assert {(task.width, task.height) for task in engine.tasks} == {(512, 512)}
    assert len(engine.tasks) == 6  # docs/upscale.md: 1200x800 at 512 px -> 3 x 2 tiles
    assert seen[-1].step == seen[-1].total == planned == 6 * request.steps
