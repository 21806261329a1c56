"""What a style decides beyond the request's own fields reaches the engine (#18): the preferred
resolution changes the denoise size, the prediction override the scheduler, and the result's
metadata records the style and the resolved settings."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.metadata import JSON_KEY, png_text  # noqa: E402
from backend.engine.types import EngineConfig, GenerationRequest  # noqa: E402
from backend.protocol import LoraParams  # noqa: E402
from backend.style_resolve import apply_template, merge_loras  # noqa: E402


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)))


def run(engine: Engine, **changes: object):
    fields: dict = {
        "mode": "txt2img",
        "width": 64,
        "height": 64,
        "prompt": "a fox",
        "steps": 2,
        "seed": 3,
        "model": "tiny",
    }
    fields.update(changes)
    return engine.generate(GenerationRequest(**fields))[0]


def test_preferred_resolution_changes_the_denoise_size(engine):
    calls: list[tuple[int, int]] = []
    original = engine._denoise

    def spy(task, on_step):
        calls.append((task.width, task.height))
        return original(task, on_step)

    engine._denoise = spy  # type: ignore[method-assign]
    try:
        plain = run(engine)
        larger = run(engine, resolution=128)
    finally:
        del engine._denoise
    assert calls[1][0] > calls[0][0] and calls[1][1] > calls[0][1]
    assert larger.image.shape == plain.image.shape == (64, 64, 4)


def test_prediction_override_runs_and_is_recorded(engine):
    epsilon = run(engine)
    v_pred = run(engine, prediction="v_prediction")
    assert epsilon.metadata.prediction_type == "epsilon"
    assert v_pred.metadata.prediction_type == "v_prediction"
    assert not np.array_equal(epsilon.image, v_pred.image)
    assert np.array_equal(run(engine).image, epsilon.image)  # the model itself is untouched


def test_metadata_records_the_style_and_what_it_resolved(engine):
    resolved = {"sampler": "dpmpp_2m_karras", "from_style": ["prompt", "sampler"]}
    layer = run(engine, style="Ink Wash", resolved=resolved, prompt="ink wash of {a|a} fox")
    meta = layer.metadata
    assert meta.style == "Ink Wash"
    assert meta.resolved["from_style"] == ["prompt", "sampler"]
    assert meta.resolved["prompt_typed"] == "ink wash of {a|a} fox"
    assert meta.prompt == "ink wash of a fox"
    payload = json.loads(dict(png_text(meta))[JSON_KEY])
    assert payload["metadata"]["style"] == "Ink Wash"
    assert payload["metadata"]["resolved"]["wildcards"] == ["a"]


@pytest.mark.parametrize(
    ("template", "text", "expected"),
    [
        ("masterpiece, {prompt}", "a fox", "masterpiece, a fox"),
        ("{prompt}, ink", "", "ink"),
        ("masterpiece", "a fox", "masterpiece, a fox"),
        ("", "a fox", "a fox"),
        ("{prompt} and {prompt}", "x", "x and x"),
    ],
)
def test_prompt_templates(template, text, expected):
    assert apply_template(template, text) == expected


def test_request_loras_win_over_the_styles_on_a_duplicate_name():
    merged = merge_loras(
        [LoraParams(name="a", weight=0.5), LoraParams(name="b", weight=0.7)],
        [LoraParams(name="b", weight=1.0)],
    )
    assert [(lo.name, lo.weight) for lo in merged] == [("a", 0.5), ("b", 1.0)]
