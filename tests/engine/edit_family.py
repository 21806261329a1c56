"""Test-only families that edit and decompose with real, deterministic pixel work, and a
model manager that "loads" them without weights: the engine's edit/layers geometry, checks
and the API run through the real ``Engine`` with them (no model call to wait for).

* ``edit-test`` (family ``test_edit``): the edit inverts the colours of the image; it takes
  one reference image and records every ``EditCall`` it gets.
* ``layers-test`` (family ``test_layers``, decompose only): the picture split by luminance
  into N layers: layer 0 opaque, layer k holds the pixels whose luminance is at least
  k * 256 / N with alpha 255, elsewhere 0 (real alpha, never a rectangle); the composite is
  the picture itself (plus ``COMPOSITE_OFFSET``).
* ``plain-test``: an SD1.5 checkpoint (neither).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from backend.engine import families
from backend.engine.families.base import DecomposeSpec, EditSpec
from backend.engine.types import (
    CheckpointEntry,
    DecomposeCall,
    Decomposition,
    EditCall,
    Inventory,
)

NATIVE = 64
EDIT_CALLS: list[EditCall] = []
DECOMPOSE_CALLS: list[DecomposeCall] = []
COMPOSITE_OFFSET = {"value": 0}


def invert(pipe: Any, call: EditCall) -> list[np.ndarray]:
    EDIT_CALLS.append(call)
    for step in range(call.steps):
        call.on_step(step + 1, call.steps, None)
    return [255 - call.image for _ in call.seeds]


def split_by_luminance(pipe: Any, call: DecomposeCall) -> Decomposition:
    DECOMPOSE_CALLS.append(call)
    for step in range(call.steps):
        call.on_step(step + 1, call.steps, None)
    luminance = call.image.astype(np.float32).mean(axis=2)
    layers = []
    for k in range(call.layers):
        alpha = np.where(luminance >= k * 256 / call.layers, 255, 0).astype(np.uint8)
        layers.append(np.concatenate([call.image, alpha[..., None]], axis=2))
    composite = np.clip(call.image.astype(int) + COMPOSITE_OFFSET["value"], 0, 255)
    return Decomposition(layers=layers, composite=composite.astype(np.uint8))


BASE = families.get("sd15")
EDIT_FAMILY = replace(
    BASE, id="test_edit", label="TestEdit", edit=EditSpec(max_references=1, run=invert, live=True)
)
LAYERS_FAMILY = replace(
    BASE,
    id="test_layers",
    label="TestLayers",
    pipelines={},
    decompose=DecomposeSpec(run=split_by_luminance, min_layers=2, max_layers=5, default_layers=3),
)
CHECKPOINTS = {"edit-test": "test_edit", "layers-test": "test_layers", "plain-test": "sd15"}


@dataclass
class FakeLoaded:
    name: str
    family: str
    native_resolution: int = NATIVE
    inpaint: bool = False
    device: str = "cpu"
    pipe: Any = field(
        default_factory=lambda: SimpleNamespace(scheduler=SimpleNamespace(config={}), device="cpu")
    )


class FakeModels:
    """What ``Engine`` asks of a model manager, for the checkpoints above."""

    device = "cpu"
    dtype = "float32"

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.names = dict(CHECKPOINTS if names is None else names)
        self.loaded: dict[str, FakeLoaded] = {}

    def inventory(self) -> Inventory:
        return Inventory(
            checkpoints=[
                CheckpointEntry(name, family, False, f"test:{name}")
                for name, family in self.names.items()
            ]
        )

    def checkpoint(self, name: str) -> FakeLoaded:
        if name not in self.loaded:
            self.loaded[name] = FakeLoaded(name, self.names[name])
        return self.loaded[name]

    @contextmanager
    def loras_applied(self, loaded: Any, loras: list) -> Iterator[None]:
        yield


@pytest.fixture
def edit_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two test families registered for one test (and the calls they record cleared)."""
    monkeypatch.setattr(families, "FAMILIES", (*families.FAMILIES, EDIT_FAMILY, LAYERS_FAMILY))
    EDIT_CALLS.clear()
    DECOMPOSE_CALLS.clear()
    COMPOSITE_OFFSET["value"] = 0
