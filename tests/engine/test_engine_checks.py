"""``Engine.check_request``: every bad input is refused, naming the parameter, before any work."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import InvalidRequest, ModelNotFound  # noqa: E402
from backend.engine.types import (  # noqa: E402
    ControlInput,
    EngineConfig,
    GenerationRequest,
    InpaintSettings,
    LoraInput,
)

W, H = 96, 64


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return Engine(config, max_pixels=2048 * 2048)


def rgba(h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 4), 128, np.uint8)


def mask(value: int = 255) -> np.ndarray:
    out = np.zeros((H, W), np.uint8)
    out[10:30, 10:40] = value
    return out


def control(**changes: object) -> ControlInput:
    base: dict = {"type": "canny", "image": rgba()}
    base.update(changes)
    return ControlInput(**base)


def make(mode: str = "inpaint", **changes: object) -> GenerationRequest:
    base: dict = {"mode": mode, "width": W, "height": H, "model": "tiny", "steps": 2}
    if mode != "txt2img":
        base["image"] = rgba()
    if mode in ("inpaint", "outpaint"):
        base["mask"] = mask()
    base.update(changes)
    return GenerationRequest(**base)


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint", "outpaint"])
def test_good_requests_pass(engine: Engine, mode: str) -> None:
    engine.check_request(make(mode))
    engine.check_request(
        make(
            mode,
            controls=[control(), control(type="depth", preprocess=False, start=0.2, end=0.2)],
            loras=[LoraInput("tiny-lora", 0.7)],
            batch=8,
            steps=150,
            cfg_scale=30.0,
            sampler="lcm",
            clip_skip=2,
        )
    )
    engine.check_request(make("txt2img", strength=0.0, width=8, height=8))


BAD: list[tuple[str, dict, type, str]] = [
    ("unknown mode", {"mode": "sketch"}, InvalidRequest, "mode"),
    ("width too small", {"width": 7}, InvalidRequest, "width"),
    ("width too large", {"width": 8193}, InvalidRequest, "width"),
    ("height zero", {"height": 0}, InvalidRequest, "height"),
    ("width not an int", {"width": 96.0}, InvalidRequest, "width"),
    ("too many pixels", {"width": 4096, "height": 2048}, InvalidRequest, "width"),
    ("image missing", {"image": None}, InvalidRequest, "image"),
    ("image wrong size", {"image": rgba(H, W + 1)}, InvalidRequest, "image"),
    ("image float", {"image": rgba().astype(np.float32)}, InvalidRequest, "image"),
    ("image rgb", {"image": np.zeros((H, W, 3), np.uint8)}, InvalidRequest, "image"),
    ("mask missing", {"mask": None}, InvalidRequest, "mask"),
    ("mask empty", {"mask": mask(0)}, InvalidRequest, "mask"),
    ("mask wrong size", {"mask": np.full((H + 1, W), 255, np.uint8)}, InvalidRequest, "mask"),
    ("mask bool", {"mask": mask() > 0}, InvalidRequest, "mask"),
    ("strength above 1", {"strength": 1.5}, InvalidRequest, "strength"),
    ("strength zero", {"strength": 0.0}, InvalidRequest, "strength"),
    ("strength nan", {"strength": float("nan")}, InvalidRequest, "strength"),
    ("steps zero", {"steps": 0}, InvalidRequest, "steps"),
    ("steps too many", {"steps": 151}, InvalidRequest, "steps"),
    ("cfg negative", {"cfg_scale": -1.0}, InvalidRequest, "cfg_scale"),
    ("cfg too large", {"cfg_scale": 31.0}, InvalidRequest, "cfg_scale"),
    ("batch zero", {"batch": 0}, InvalidRequest, "batch"),
    ("batch nine", {"batch": 9}, InvalidRequest, "batch"),
    ("clip skip zero", {"clip_skip": 0}, InvalidRequest, "clip_skip"),
    ("seed negative", {"seed": -1}, InvalidRequest, "seed"),
    ("unknown sampler", {"sampler": "k_magic"}, InvalidRequest, "sampler"),
    ("unknown fill", {"inpaint": InpaintSettings(fill="magic")}, InvalidRequest, "inpaint.fill"),
    ("unknown model", {"model": "nope"}, ModelNotFound, "model"),
    (
        "unknown control type",
        {"controls": [control(type="colour")]},
        InvalidRequest,
        "controls[0].type",
    ),
    (
        "control image size",
        {"controls": [control(), control(image=rgba(H - 1, W))]},
        InvalidRequest,
        "controls[1].image",
    ),
    (
        "control image missing",
        {"controls": [control(image=None)]},
        InvalidRequest,
        "controls[0].image",
    ),
    (
        "control start after end",
        {"controls": [control(start=0.8, end=0.2)]},
        InvalidRequest,
        "controls[0].start",
    ),
    (
        "control strength",
        {"controls": [control(strength=3.0)]},
        InvalidRequest,
        "controls[0].strength",
    ),
    (
        "unknown controlnet",
        {"controls": [control(model="nope")]},
        ModelNotFound,
        "controls[0].model",
    ),
    (
        "controlnet of another family",
        {"controls": [control(model="tiny-sdxl-controlnet")]},
        InvalidRequest,
        "controls[0].model",
    ),
    (
        "unknown lora",
        {"loras": [LoraInput("tiny-lora"), LoraInput("nope")]},
        ModelNotFound,
        "loras[1].name",
    ),
    (
        "lora of another family",
        {"model": "tiny-sdxl", "loras": [LoraInput("tiny-lora")]},
        InvalidRequest,
        "loras[0].name",
    ),
    ("lora weight", {"loras": [LoraInput("tiny-lora", 9.0)]}, InvalidRequest, "loras[0].weight"),
]


@pytest.mark.parametrize(
    ("changes", "error", "field"), [case[1:] for case in BAD], ids=[c[0] for c in BAD]
)
def test_bad_input_names_the_parameter(
    engine: Engine, changes: dict, error: type, field: str
) -> None:
    with pytest.raises(error) as info:
        engine.check_request(make(**changes))
    assert info.value.field == field
    assert info.value.message  # a sentence for the artist


def test_strength_zero_is_refused_for_img2img_only(engine: Engine) -> None:
    with pytest.raises(InvalidRequest):
        engine.check_request(make("img2img", strength=0.0))
    engine.check_request(make("outpaint", strength=0.0))  # forced to 1 inside the hole


def test_generate_refuses_before_loading_anything(tiny_models_dir: Path) -> None:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    fresh = Engine(config)
    with pytest.raises(InvalidRequest):
        fresh.generate(make(steps=0))
    assert fresh.loaded_model is None


def test_queries(engine: Engine) -> None:
    assert "dpmpp_2m_karras" in engine.samplers() and "lcm" in engine.samplers()
    assert {"canny", "scribble", "lineart"} <= set(engine.preprocessors())
    assert "depth" not in engine.preprocessors()  # no depth model installed
    assert "tiny" in [entry.name for entry in engine.inventory().checkpoints]
    assert engine.device == "cpu" and engine.dtype == "float32"
    sketch = np.full((H, W, 4), 255, np.uint8)
    sketch[20:40, 20:60, :3] = 0
    canny = engine.preprocess("canny", sketch)
    assert canny.shape == (H, W, 4) and (canny[..., 3] == 255).all()
    assert canny[..., 0].max() == 255 and canny[..., 0].min() == 0
    with pytest.raises(InvalidRequest):
        engine.preprocess("colour", sketch)


def test_a_mode_or_controlnet_the_family_lacks_is_refused_naming_the_model(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What /v1/models ``capabilities`` tells the plugin is also checked at submit."""
    from dataclasses import replace

    from backend.engine import families

    sd15 = families.get("sd15")
    txt_only = replace(sd15, pipelines={("txt2img", False): "StableDiffusionPipeline"})
    patched = tuple(txt_only if f.id == "sd15" else f for f in families.FAMILIES)
    monkeypatch.setattr(families, "FAMILIES", patched)
    with pytest.raises(InvalidRequest) as error:
        engine.check_request(make("inpaint"))
    assert error.value.field == "mode"
    assert "the model 'tiny' (SD1.5) cannot run inpaint; it runs txt2img" in str(error.value)
    with pytest.raises(InvalidRequest) as error:
        engine.check_request(make("txt2img", controls=[control()]))
    assert error.value.field == "controls[0].type" and "no ControlNet" in str(error.value)
    engine.check_request(make("txt2img"))
