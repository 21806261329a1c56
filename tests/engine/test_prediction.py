"""Issue 13 kind 4: v-prediction checkpoints run as v-prediction.

Real single files, written by the tiny builder: the plain tiny SD1.5 checkpoint, the same
weights with the ``v_pred`` (and ``ztsnr``) marker keys, and plain files with a sidecar YAML.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import ModelLoadError  # noqa: E402
from backend.engine.metadata import parameters_text  # noqa: E402
from backend.engine.prediction import (  # noqa: E402
    Prediction,
    detect_prediction,
    from_marker_keys,
    from_sidecar,
)
from backend.engine.schedulers import make_scheduler, sampler_names  # noqa: E402
from backend.engine.tiny import scheduler_config, tiny_checkpoint_file  # noqa: E402
from backend.engine.types import EngineConfig, GenerationRequest  # noqa: E402

A1111_V_YAML = """model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    linear_start: 0.00085
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vpred-models")
    folder = root / "checkpoints"
    tiny_checkpoint_file("sd15", False, folder / "plain.safetensors")
    tiny_checkpoint_file("sd15", False, folder / "vpred.safetensors", markers=["v_pred"])
    tiny_checkpoint_file(
        "sd15", False, folder / "vpred-ztsnr.safetensors", markers=["v_pred", "ztsnr"]
    )
    tiny_checkpoint_file("sd15", False, folder / "sidecar-v.safetensors")
    (folder / "sidecar-v.yaml").write_text(A1111_V_YAML)
    tiny_checkpoint_file("sd15", False, folder / "forced-eps.safetensors", markers=["v_pred"])
    (folder / "forced-eps.yaml").write_text('parameterization: "eps"\n')
    tiny_checkpoint_file("sd15", False, folder / "sidecar-ztsnr.safetensors")
    (folder / "sidecar-ztsnr.yml").write_text(
        "prediction_type: v_prediction\nzero_terminal_snr: true\n"
    )
    return root


@pytest.fixture(scope="module")
def engine(models_dir: Path, tiny_models_dir: Path) -> Engine:
    config = EngineConfig(
        models_dir=str(models_dir),
        device="cpu",
        dtype="float32",
        tiny_dir=str(tiny_models_dir),
        cache_models=1,
    )
    return Engine(config)


def txt2img(model: str, sampler: str = "euler") -> GenerationRequest:
    return GenerationRequest(
        mode="txt2img",
        width=64,
        height=64,
        model=model,
        prompt="a cat",
        steps=3,
        seed=3,
        sampler=sampler,
    )


def used_scheduler_config(engine: Engine) -> dict:
    """The config of the scheduler the last txt2img job ran with."""
    pipe = engine._pipelines.get(engine._loaded, "txt2img", [])
    return dict(pipe.scheduler.config)


@pytest.mark.parametrize(
    ("model", "expected", "zero_snr", "spacing"),
    [
        ("plain", "epsilon", False, "leading"),
        ("vpred", "v_prediction", False, "leading"),
        ("vpred-ztsnr", "v_prediction", True, "trailing"),
        ("sidecar-v", "v_prediction", False, "leading"),
        ("forced-eps", "epsilon", False, "leading"),
        ("sidecar-ztsnr", "v_prediction", True, "trailing"),
    ],
)
def test_the_scheduler_that_runs_has_the_files_prediction(
    engine: Engine, model: str, expected: str, zero_snr: bool, spacing: str
) -> None:
    layer = engine.generate(txt2img(model))[0]
    config = used_scheduler_config(engine)
    assert config["prediction_type"] == expected
    assert bool(config.get("rescale_betas_zero_snr")) is zero_snr
    assert config["timestep_spacing"] == spacing
    # recorded in the result metadata (JSON and the A1111 text)
    assert layer.metadata.prediction_type == expected
    assert layer.metadata.zero_terminal_snr is zero_snr
    assert ("Prediction: v_prediction" in parameters_text(layer.metadata)) is (
        expected == "v_prediction"
    )


def test_v_prediction_changes_the_picture(engine: Engine) -> None:
    """Same weights, same seed: the v-pred file must not run as epsilon (was byte-equal)."""
    plain = engine.generate(txt2img("plain"))[0].image.astype(int)
    for model in ("vpred", "vpred-ztsnr", "sidecar-v"):
        other = engine.generate(txt2img(model))[0].image.astype(int)
        assert np.abs(other - plain).mean() > 1.0, model
    forced = engine.generate(txt2img("forced-eps"))[0].image
    assert np.array_equal(forced, plain.astype(np.uint8))  # the sidecar overrides the keys


@pytest.mark.parametrize("sampler", ["dpmpp_2m_karras", "lcm", "euler_a", "heun"])
def test_prediction_holds_across_sampler_changes(engine: Engine, sampler: str) -> None:
    engine.generate(txt2img("vpred-ztsnr", sampler))
    config = used_scheduler_config(engine)
    assert config["prediction_type"] == "v_prediction"
    assert config["timestep_spacing"] == "trailing"
    if sampler != "heun":  # diffusers' Heun has no zero-SNR rescaling
        assert config["rescale_betas_zero_snr"] is True


def test_every_sampler_keeps_v_prediction() -> None:
    base = {**scheduler_config(), **Prediction("v_prediction", True).scheduler_overrides()}
    for name in sampler_names():
        scheduler = make_scheduler(name, base)
        assert scheduler.config.prediction_type == "v_prediction", name
        assert scheduler.config.timestep_spacing == "trailing", name


def test_marker_keys() -> None:
    assert from_marker_keys(["model.diffusion_model.x"]) is None
    assert from_marker_keys(["v_pred"]) == Prediction("v_prediction", False, "marker keys")
    assert from_marker_keys(["ztsnr", "v_pred"]) == Prediction("v_prediction", True, "marker keys")


def test_sidecar_rules(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"")
    eps = {"prediction_type": "epsilon"}
    # no sidecar: the keys, then the config
    assert detect_prediction(model, [], eps).type == "epsilon"
    assert detect_prediction(model, ["v_pred"], eps).type == "v_prediction"
    # a sidecar saying nothing about prediction changes nothing
    (tmp_path / "m.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert detect_prediction(model, ["v_pred", "ztsnr"], eps) == Prediction(
        "v_prediction", True, "marker keys"
    )
    # keeping v keeps the keys' zero SNR; switching to eps drops it
    (tmp_path / "m.yaml").write_text(A1111_V_YAML)
    assert detect_prediction(model, ["v_pred", "ztsnr"], eps).zero_terminal_snr
    (tmp_path / "m.yaml").write_text("parameterization: eps\n")
    assert detect_prediction(model, ["v_pred", "ztsnr"], eps) == Prediction(
        "epsilon", False, "m.yaml"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('parameterization: "x0"\n', "parameterization"),
        ("prediction_type: sample\n", "prediction_type"),
        ("zero_terminal_snr: maybe\n", "zero_terminal_snr"),
        ("model: [unclosed\n", "YAML"),
    ],
)
def test_a_sidecar_it_cannot_read_is_named(tmp_path: Path, text: str, key: str) -> None:
    sidecar = tmp_path / "m.yaml"
    sidecar.write_text(text)
    with pytest.raises(ModelLoadError) as info:
        from_sidecar(sidecar, Prediction())
    assert "m.yaml" in str(info.value) and key in str(info.value)
