"""Reference images (#18): tiny IP-Adapters for the SD1.5 and SDXL tiny UNets and a tiny CLIP
vision encoder, built in code and saved in the models folder (ComfyUI layout), found by the
inventory, loaded through diffusers, and shown to change the picture by their weight (weight 0
is byte-identical to no adapter)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import EngineError  # noqa: E402
from backend.engine.reference import _layer_masks  # noqa: E402
from backend.engine.tiny_ipadapter import write_tiny_references  # noqa: E402
from backend.engine.types import ControlInput, EngineConfig, GenerationRequest  # noqa: E402

MODELS = ["tiny", "tiny-sdxl"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("reference-models")
    write_tiny_references(directory)
    return directory


@pytest.fixture(scope="module")
def engine(models_dir: Path, tiny_models_dir: Path) -> Engine:
    config = EngineConfig(
        device="cpu", dtype="float32", models_dir=str(models_dir), tiny_dir=str(tiny_models_dir)
    )
    return Engine(config)


def reference_image(seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    image[..., 3] = 255
    return image


def run(engine: Engine, model: str, *controls: ControlInput, **changes: object) -> np.ndarray:
    fields: dict = {
        "mode": "txt2img",
        "width": 64,
        "height": 64,
        "prompt": "a fox",
        "steps": 3,
        "seed": 5,
        "model": model,
        "controls": list(controls),
    }
    fields.update(changes)
    return engine.generate(GenerationRequest(**fields))[0].image


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_the_inventory_lists_adapters_with_family_type_and_encoder(engine):
    adapters = {entry.name: entry for entry in engine.inventory().ipadapters}
    assert adapters["tiny-ipadapter-sd15.safetensors"].family == "sd15"
    assert adapters["tiny-ipadapter-sdxl.safetensors"].family == "sdxl"
    assert adapters["tiny-ipadapter-face-sd15.safetensors"].type == "face"
    assert all(a.image_encoder == "tiny-clip-vision.safetensors" for a in adapters.values())
    assert all(a.problem is None for a in adapters.values())


def test_adapters_without_an_encoder_or_as_pickles_are_listed_with_a_problem(tmp_path):
    from backend.engine.inventory import scan_models

    write_tiny_references(tmp_path)
    (tmp_path / "clip_vision" / "tiny-clip-vision.safetensors").unlink()
    (tmp_path / "ipadapter" / "ip-adapter-faceid_sdxl.bin").write_bytes(b"not read")
    inventory = scan_models(tmp_path)
    problems = {entry.name: entry.problem for entry in inventory.ipadapters}
    assert "clip_vision" in problems["tiny-ipadapter-sd15.safetensors"]
    assert "--allow-pickle" in problems["ip-adapter-faceid_sdxl.bin"]


@pytest.mark.parametrize("model", MODELS)
def test_weight_zero_is_byte_identical_and_the_weight_changes_the_picture(engine, model):
    plain = run(engine, model)
    zero = run(engine, model, ControlInput("reference", reference_image(), strength=0.0))
    weak = run(engine, model, ControlInput("reference", reference_image(), strength=0.1))
    strong = run(engine, model, ControlInput("reference", reference_image(), strength=1.0))
    assert np.array_equal(zero, plain)
    assert not np.array_equal(weak, plain) and not np.array_equal(strong, weak)
    assert distance(strong, plain) > distance(weak, plain)
    # The adapters are unloaded after the job: the next plain job is the same again.
    assert np.array_equal(run(engine, model), plain)


@pytest.mark.parametrize("model", MODELS)
def test_types_windows_and_several_references(engine, model):
    image = reference_image()
    full = run(engine, model, ControlInput("reference", image))
    style = run(engine, model, ControlInput("style", image))
    composition = run(engine, model, ControlInput("composition", image))
    late = run(engine, model, ControlInput("reference", image, start=0.5, end=1.0))
    two = run(
        engine,
        model,
        ControlInput("reference", image),
        ControlInput("reference", reference_image(1), strength=0.8),
    )
    outputs = [full, style, composition, late, two]
    for index, first in enumerate(outputs):
        for second in outputs[index + 1 :]:
            assert not np.array_equal(first, second)


def test_a_face_control_picks_the_face_adapter_and_can_be_named(engine):
    image = reference_image()
    face = run(engine, "tiny", ControlInput("face", image))
    named = run(
        engine,
        "tiny",
        ControlInput("face", image, model="tiny-ipadapter-face-sd15.safetensors"),
    )
    general = run(
        engine, "tiny", ControlInput("face", image, model="tiny-ipadapter-sd15.safetensors")
    )
    assert np.array_equal(face, named) and not np.array_equal(face, general)


@pytest.mark.parametrize(
    ("model", "control", "field"),
    [
        ("tiny", ControlInput("reference", reference_image(), model="nope.safetensors"), "model"),
        (
            "tiny",
            ControlInput("style", reference_image(), model="tiny-ipadapter-sdxl.safetensors"),
            "model",
        ),
        ("tiny", ControlInput("reference", reference_image(), start=0.8, end=0.2), "start"),
    ],
)
def test_reference_controls_are_checked_at_submit(engine, model, control, field):
    request = GenerationRequest(
        mode="txt2img", width=64, height=64, steps=2, model=model, controls=[control]
    )
    with pytest.raises(EngineError) as info:
        engine.check_request(request)
    assert info.value.field == f"controls[0].{field}", info.value.message


def test_no_adapter_for_the_family_names_the_control_type(tiny_models_dir):
    bare = Engine(EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)))
    request = GenerationRequest(
        mode="txt2img",
        width=64,
        height=64,
        steps=2,
        model="tiny",
        controls=[ControlInput("reference", reference_image())],
    )
    with pytest.raises(EngineError) as info:
        bare.check_request(request)
    assert info.value.field == "controls[0].type"
    assert "models/ipadapter" in info.value.message


def test_style_and_composition_use_instantstyle_layers_of_an_sdxl_unet():
    names = [
        f"{side}_blocks.{block}.attentions.{attention}.transformer_blocks.0.attn2.processor"
        for side, blocks in (("down", (1, 2)), ("up", (0, 1)))
        for block in blocks
        for attention in range(2 if side == "down" else 3)
    ]
    names.append("mid_block.attentions.0.transformer_blocks.0.attn2.processor")
    style = {name for name, value in _layer_masks(names, "style").items() if value}
    composition = {name for name, value in _layer_masks(names, "composition").items() if value}
    assert style == {"up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor"}
    assert composition == {"down_blocks.2.attentions.1.transformer_blocks.0.attn2.processor"}
    assert all(_layer_masks(names, "reference").values())


def test_a_plus_adapter_reads_the_encoders_hidden_states(engine):
    """IP-Adapter Plus (a Resampler projection, as ip-adapter-plus-face): weight 0 is the
    picture without it, weight 1 another one than the plain adapter's."""
    name = "tiny-ipadapter-plus-face-sd15.safetensors"
    assert {e.name: e.projection for e in engine.inventory().ipadapters}[name] == "plus"
    image = reference_image()
    plain = run(engine, "tiny")
    zero = run(engine, "tiny", ControlInput("face", image, model=name, strength=0.0))
    plus = run(engine, "tiny", ControlInput("face", image, model=name))
    other = run(engine, "tiny", ControlInput("face", image))
    assert np.array_equal(zero, plain)
    assert not np.array_equal(plus, plain) and not np.array_equal(plus, other)
