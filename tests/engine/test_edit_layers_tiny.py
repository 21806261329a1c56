"""Modes "edit" and "layers" end to end through the real inventory, loader and Engine with
the tiny families built in code (random weights, 64 px, 2 steps, CPU): Qwen-Image-Layered
decomposes, Qwen-Image-Edit(-Plus) edits with a reference.

Tolerance of the composite: with random weights the pipeline's own composite (Layered's
frame 0) is unrelated to its layers, so these tests check that ``composite_error`` is exactly
the mean |over-composite of the returned layers - the pipeline's composite| of the same run
(recomputed here from the family's own ``run``), and that the layers are returned unchanged
(region = native size, opaque, no selection: no resize, alpha untouched). With real weights
the same number is what the artist sees in the metadata (docs/protocol.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.engine import families
from backend.engine.decompose import composite_error
from backend.engine.engine import Engine
from backend.engine.errors import InvalidRequest
from backend.engine.families.tiny_qwen import write_tiny_qwen_image
from backend.engine.types import (
    ControlInput,
    DecomposeCall,
    EngineConfig,
    GenerationRequest,
    Progress,
)

SIDE = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("edit-models")
    names = {
        variant: write_tiny_qwen_image(root, variant)
        for variant in ("layered", "edit", "edit_plus")
    }
    return root, names


@pytest.fixture(scope="module")
def engine(models: tuple[Path, dict[str, str]]) -> Engine:
    root, _ = models
    return Engine(EngineConfig(models_dir=str(root), device="cpu", dtype="float32"))


def region() -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    image = np.zeros((SIDE, SIDE, 4), np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = xx * 4, yy * 4, 120, 255
    return image


def test_layered_decomposes_into_three_layers_with_a_measured_composite(engine, models) -> None:
    _, names = models
    request = GenerationRequest(
        mode="layers",
        width=SIDE,
        height=SIDE,
        model=names["layered"],
        image=region(),
        steps=2,
        cfg_scale=1.0,
        seed=7,
        layers=3,
    )
    layers = engine.generate(request)
    assert [layer.metadata.layer_index for layer in layers] == [0, 1, 2]
    assert all(layer.image.shape == (SIDE, SIDE, 4) for layer in layers)
    assert all((layer.x, layer.y) == (0, 0) for layer in layers)
    # The same run straight through the family: same layers, and the error the engine gave.
    loaded = engine._loaded
    spec = families.get(loaded.family).decompose
    assert spec is not None and loaded.native_resolution == SIDE
    call = DecomposeCall(
        prompt="",
        negative_prompt="",
        image=np.ascontiguousarray(region()[..., :3]),
        layers=3,
        width=SIDE,
        height=SIDE,
        steps=2,
        cfg_scale=1.0,
        seed=7,
        on_step=lambda *_: None,
    )
    found = spec.run(loaded.pipe, call)
    for ours, theirs in zip(layers, found.layers, strict=True):
        assert np.array_equal(ours.image[..., 3], theirs[..., 3])
    expected = round(composite_error(found.layers, found.composite), 3)
    assert {layer.metadata.composite_error for layer in layers} == {expected}
    assert engine.planned_steps(request) == 2


def edit_request(model: str, **changes: object) -> GenerationRequest:
    values: dict = {
        "mode": "edit",
        "width": SIDE,
        "height": SIDE,
        "prompt": "make the background red",
        "model": model,
        "image": region(),
        "steps": 2,
        "cfg_scale": 1.0,
        "seed": 3,
    }
    return GenerationRequest(**{**values, **changes})


def reference() -> ControlInput:
    cup = np.zeros((40, 30, 4), np.uint8)
    cup[8:32, 6:24] = (220, 40, 40, 255)
    return ControlInput("reference", cup, model=None)


def test_edit_plus_with_one_reference_covers_the_region(engine, models) -> None:
    _, names = models
    steps: list[Progress] = []
    (layer,) = engine.generate(
        edit_request(names["edit_plus"], controls=[reference()]), steps.append
    )
    assert (layer.x, layer.y, layer.image.shape) == (0, 0, (SIDE, SIDE, 4))
    assert (layer.image[..., 3] == 255).all() and layer.metadata.mode == "edit"
    assert [p.step for p in steps] == [1, 2] and steps[-1].total == 2


def test_edit_of_a_selection_is_placed_at_it(engine, models) -> None:
    _, names = models
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[16:48, 8:40] = 255
    (layer,) = engine.generate(edit_request(names["edit"], mask=mask))
    assert (layer.x, layer.y, layer.width, layer.height) == (8, 16, 32, 32)
    assert layer.image[..., 3].max() == 255


def test_the_real_inventory_refuses_what_the_checkpoints_cannot(engine, models) -> None:
    _, names = models
    with pytest.raises(InvalidRequest) as caught:
        engine.check_request(edit_request(names["edit_plus"], controls=[reference()] * 3))
    assert caught.value.field == "controls" and "at most 2" in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:
        engine.check_request(edit_request(names["edit"], controls=[reference()]))
    assert caught.value.field == "controls" and "at most 0" in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:
        engine.check_request(edit_request(names["layered"]))
    message = str(caught.value)
    assert (
        caught.value.field == "model" and names["edit"] in message and names["edit_plus"] in message
    )
