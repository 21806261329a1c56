"""VAEs (issue 13, kind 8): listed with their family, chosen per job (``vae``) or per model
(``model_vaes``), used for checkpoints without one, refused up front with a sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from model_files import fake_file, strip_vae

from backend.engine.engine import Engine
from backend.engine.errors import EngineError, InvalidRequest, ModelNotFound
from backend.engine.model_manager import ModelManager
from backend.engine.types import EngineConfig, GenerationRequest
from backend.engine.vae import tiny_vae_file


def make_engine(root: Path, tiny_dir: Path, **config) -> Engine:
    settings = EngineConfig(models_dir=str(root), tiny_dir=str(tiny_dir), device="cpu", **config)
    return Engine(settings, ModelManager(settings))


@pytest.fixture(scope="module")
def root(tiny_models_dir, tiny_model_paths, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vae-models")
    tiny_vae_file("sd15", root / "vae" / "tiny-vae.safetensors")
    tiny_vae_file("sdxl", root / "vae" / "tiny-sdxl-vae.safetensors")
    fake_file(root / "vae" / "flux-ae.safetensors", {"decoder.conv_in.weight": (512, 16, 3, 3)})
    strip_vae(tiny_model_paths["tiny"], root / "checkpoints" / "tiny-novae.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(root, tiny_models_dir) -> Engine:
    return make_engine(root, tiny_models_dir)


def txt2img(engine: Engine, model: str, vae: str | None = None) -> np.ndarray:
    request = GenerationRequest(
        "txt2img",
        64,
        64,
        prompt="a red barn",
        model=model,
        vae=vae,
        steps=2,
        seed=3,
        sampler="euler",
    )
    return engine.generate(request)[0].image


def test_vaes_are_listed_with_their_family_and_problems(engine) -> None:
    vaes = {entry.name: entry for entry in engine.inventory().vaes}
    assert (vaes["tiny-vae"].family, vaes["tiny-vae"].problem) == ("sd15", None)
    assert vaes["tiny-sdxl-vae"].family == "sdxl"
    assert "16 latent channels" in vaes["flux-ae"].problem
    novae = next(e for e in engine.inventory().checkpoints if e.name == "tiny-novae")
    assert novae.has_vae is False and novae.widths == (32, 32)


def test_a_chosen_vae_changes_the_picture_and_the_own_vae_comes_back(engine) -> None:
    plain = txt2img(engine, "tiny")
    other = txt2img(engine, "tiny", "tiny-vae")
    assert np.abs(plain.astype(int) - other.astype(int)).max() > 10
    np.testing.assert_array_equal(txt2img(engine, "tiny"), plain)  # the own VAE is back
    np.testing.assert_array_equal(txt2img(engine, "tiny", "tiny-vae"), other)


def test_a_checkpoint_without_vae_runs_with_its_familys_vae(engine) -> None:
    """The stripped copy with the installed SD1.5 VAE = the full model with that VAE chosen."""
    np.testing.assert_array_equal(
        txt2img(engine, "tiny-novae"), txt2img(engine, "tiny", "tiny-vae")
    )


def test_the_per_model_default_vae_applies_when_the_request_names_none(
    root, tiny_models_dir
) -> None:
    engine = make_engine(root, tiny_models_dir, model_vaes={"tiny": "tiny-vae"})
    reference = make_engine(root, tiny_models_dir)
    np.testing.assert_array_equal(txt2img(engine, "tiny"), txt2img(reference, "tiny", "tiny-vae"))


@pytest.mark.parametrize(
    ("vae", "error", "words"),
    [
        ("tiny-sdxl-vae", InvalidRequest, "SDXL VAE"),
        ("flux-ae", InvalidRequest, "16 latent channels"),
        ("no-such-vae", ModelNotFound, "not installed"),
    ],
)
def test_bad_vaes_are_refused_at_submit_on_vae(engine, vae, error, words) -> None:
    with pytest.raises(error, match=words) as info:
        engine.check_request(GenerationRequest("txt2img", 64, 64, model="tiny", vae=vae))
    assert info.value.field == "vae"


def test_no_vae_and_none_installed_says_which_file_to_add(root, tiny_models_dir, tmp_path) -> None:
    bare = tmp_path / "models"
    (bare / "checkpoints").mkdir(parents=True)
    shutil.copy(root / "checkpoints" / "tiny-novae.safetensors", bare / "checkpoints")
    engine = make_engine(bare, tiny_models_dir)
    with pytest.raises(InvalidRequest) as info:
        engine.check_request(GenerationRequest("txt2img", 64, 64, model="tiny-novae"))
    message = info.value.message
    assert info.value.field == "vae"
    assert "models/vae/" in message and "vae-ft-mse-840000-ema-pruned.safetensors" in message
    # Loading it anyway (a preload) says the same, never a library's advice.
    with pytest.raises(EngineError) as loading:
        engine.preload("tiny-novae")
    assert "models/vae/" in loading.value.message
    for library_words in ("from_pretrained", "from_single_file", "diffusers", "Traceback"):
        assert library_words not in loading.value.message


def test_a_damaged_checkpoint_fails_with_a_sentence(tmp_path, tiny_models_dir) -> None:
    root = tmp_path / "models"
    fake_file(
        root / "checkpoints" / "half.safetensors",
        {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)},
    )
    engine = make_engine(root, tiny_models_dir)
    with pytest.raises(EngineError) as info:
        engine.preload("half")
    assert "half" in info.value.message
    for library_words in ("from_pretrained", "from_single_file", "Traceback", "import "):
        assert library_words not in info.value.message


def test_the_model_vaes_setting_reaches_the_engine_and_is_checked() -> None:
    from backend.settings import Settings, SettingsError

    settings = Settings(model_vaes={"tiny": "tiny-vae"})
    settings.check()
    assert settings.engine_config().model_vaes == {"tiny": "tiny-vae"}
    with pytest.raises(SettingsError, match="model_vaes"):
        Settings(model_vaes={"tiny": 3}).check()  # type: ignore[dict-item]
