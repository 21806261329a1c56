"""Tiny models saved the way users get them, loaded back through the code users hit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.engine import loader
from backend.engine.errors import InvalidRequest, ModelLoadError, ModelNotFound, UnsafeModelFile
from backend.engine.loader import CONFIG_KEY, load_checkpoint, load_controlnet
from backend.engine.model_manager import ModelManager, resolve_device, resolve_dtype
from backend.engine.tiny import (
    TINY_CHECKPOINTS,
    build_tiny_controlnet,
    build_tiny_pipeline,
    pipeline_configs,
)
from backend.engine.types import EngineConfig

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert set(want) == set(got)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


def assert_same_pipeline(expected, actual) -> None:
    for name in COMPONENTS:
        if getattr(expected, name, None) is not None:
            assert_same_weights(getattr(expected, name), getattr(actual, name))


def generate(pipe) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    images = pipe(
        "a blue house",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="pt",
        generator=generator,
    ).images
    return images


@pytest.mark.parametrize("name", list(TINY_CHECKPOINTS))
def test_single_file_round_trip_is_bit_identical(name: str, tiny_model_paths) -> None:
    family, inpaint = TINY_CHECKPOINTS[name]
    loaded = load_checkpoint(tiny_model_paths[name], device="cpu", dtype=torch.float32, name=name)
    assert (loaded.name, loaded.family, loaded.inpaint) == (name, family, inpaint)
    assert loaded.native_resolution == 64
    assert loaded.approx_bytes > 1_000_000
    assert getattr(loaded.pipe, "safety_checker", None) is None
    assert_same_pipeline(build_tiny_pipeline(family, inpaint), loaded.pipe)


def test_single_file_generates_the_same_image_as_the_built_pipeline(tiny_model_paths):
    loaded = load_checkpoint(tiny_model_paths["tiny"], device="cpu", dtype=torch.float32)
    expected = generate(build_tiny_pipeline("sd15"))
    assert torch.equal(generate(loaded.pipe), expected)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_diffusers_folder_round_trip(family: str, tmp_path: Path) -> None:
    pipe = build_tiny_pipeline(family, inpaint=True)
    pipe.save_pretrained(tmp_path / "model", safe_serialization=True)
    loaded = load_checkpoint(str(tmp_path / "model"), device="cpu", dtype=torch.float32)
    assert (loaded.family, loaded.inpaint, loaded.name) == (family, True, "model")
    assert_same_pipeline(pipe, loaded.pipe)


def test_file_without_embedded_config_uses_the_family_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_paths
) -> None:
    # What real A1111 files take: detect the family from the keys, use the shipped configs.
    # Here the "shipped" folder holds the tiny configs so the weights fit.
    configs = tmp_path / "configs"
    for family in ("sd15", "sdxl"):
        folder = configs / family
        folder.mkdir(parents=True)
        loader._write_component_configs(folder, family, pipeline_configs(family))
    monkeypatch.setattr(loader, "CONFIGS_DIR", configs)
    for name, family in (("tiny", "sd15"), ("tiny-sdxl", "sdxl")):
        plain = tmp_path / f"{name}-plain.safetensors"
        save_file(load_file(tiny_model_paths[name]), str(plain))  # no metadata at all
        loaded = load_checkpoint(str(plain), device="cpu", dtype=torch.float32)
        assert loaded.family == family
        assert_same_pipeline(build_tiny_pipeline(family), loaded.pipe)
    # An A1111-style .ckpt (state dict nested under "state_dict"), when pickles are allowed.
    ckpt = tmp_path / "old-style.ckpt"
    torch.save({"state_dict": load_file(tiny_model_paths["tiny"]), "global_step": 1}, ckpt)
    loaded = load_checkpoint(str(ckpt), device="cpu", dtype=torch.float32, allow_pickle=True)
    assert_same_pipeline(build_tiny_pipeline("sd15"), loaded.pipe)


def test_real_family_configs_have_filled_tokenizer_folders() -> None:
    from backend.engine.detect import CheckpointKind

    folder = loader.config_folder_for_family(CheckpointKind("sdxl", True))
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert json.loads((folder / "unet" / "config.json").read_text())["in_channels"] == 9
    pad = json.loads((folder / "tokenizer_2" / "special_tokens_map.json").read_text())
    assert pad["pad_token"] == "!"
    assert (folder / "tokenizer" / "merges.txt").stat().st_size > 100_000


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_controlnet_single_file_and_folder_round_trip(family, tiny_model_paths, tmp_path) -> None:
    name = "tiny-controlnet" if family == "sd15" else "tiny-sdxl-controlnet"
    expected = build_tiny_controlnet(family)
    assert_same_weights(
        expected, load_controlnet(tiny_model_paths[name], device="cpu", dtype=torch.float32)
    )
    expected.save_pretrained(tmp_path / "cn")
    assert_same_weights(
        expected, load_controlnet(str(tmp_path / "cn"), device="cpu", dtype=torch.float32)
    )


def test_sd15_controlnet_file_uses_the_original_key_layout(tiny_model_paths) -> None:
    keys = load_file(tiny_model_paths["tiny-controlnet"]).keys()
    assert "control_model.input_hint_block.14.weight" in keys
    assert "control_model.zero_convs.0.0.weight" in keys
    assert "control_model.middle_block_out.0.weight" in keys


def pickle_copy(source: str, target: Path) -> Path:
    from safetensors import safe_open

    with safe_open(source, framework="pt") as handle:
        config = handle.metadata()[CONFIG_KEY]
    torch.save({"state_dict": load_file(source), CONFIG_KEY: config}, target)
    return target


def test_pickle_refused_unless_allowed(tiny_model_paths, tmp_path: Path) -> None:
    ckpt = pickle_copy(tiny_model_paths["tiny"], tmp_path / "old.ckpt")
    with pytest.raises(UnsafeModelFile, match="old.ckpt"):
        load_checkpoint(str(ckpt), device="cpu", dtype=torch.float32)
    loaded = load_checkpoint(str(ckpt), device="cpu", dtype=torch.float32, allow_pickle=True)
    assert_same_pipeline(build_tiny_pipeline("sd15"), loaded.pipe)


@pytest.mark.parametrize("cut", [0.5, 0.001])
def test_truncated_file_gives_a_clear_error(tiny_model_paths, tmp_path: Path, cut: float) -> None:
    data = Path(tiny_model_paths["tiny"]).read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: max(int(len(data) * cut), 8)])
    with pytest.raises(ModelLoadError, match="broken"):
        load_checkpoint(str(broken), device="cpu", dtype=torch.float32)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "noise.safetensors"
    garbage.write_bytes(b"\xff" * 4096)
    with pytest.raises(ModelLoadError, match="noise.safetensors"):
        load_checkpoint(str(garbage), device="cpu", dtype=torch.float32)
    with pytest.raises(ModelNotFound):
        load_checkpoint(str(tmp_path / "absent.safetensors"), device="cpu", dtype=torch.float32)
    with pytest.raises(ModelNotFound, match="offline"):
        load_checkpoint("nobody-here/no-such-model", device="cpu", dtype=torch.float32)


def test_checkpoint_missing_a_component_is_refused(tiny_model_paths, tmp_path: Path) -> None:
    state = load_file(tiny_model_paths["tiny"])
    partial = {k: v for k, v in state.items() if not k.startswith("first_stage_model.")}
    from safetensors import safe_open

    with safe_open(tiny_model_paths["tiny"], framework="pt") as handle:
        metadata = handle.metadata()
    save_file(partial, str(tmp_path / "novae.safetensors"), metadata=metadata)
    with pytest.raises(ModelLoadError, match="novae"):
        load_checkpoint(str(tmp_path / "novae.safetensors"), device="cpu", dtype=torch.float32)


# -- ModelManager ---------------------------------------------------------------------------


def manager(tmp_path: Path, tiny_models_dir: Path, **overrides) -> ModelManager:
    config = EngineConfig(models_dir=str(tmp_path / "models"), tiny_dir=str(tiny_models_dir))
    for key, value in overrides.items():
        setattr(config, key, value)
    return ModelManager(config)


def test_manager_lru_keeps_the_most_recent(tmp_path, tiny_models_dir) -> None:
    models = manager(tmp_path, tiny_models_dir, cache_models=2)
    first = models.checkpoint("tiny")
    models.checkpoint("tiny-sdxl")
    assert models.checkpoint("tiny") is first  # cache hit, now most recent
    models.checkpoint("tiny-inpaint")
    assert models.loaded_names == ["tiny", "tiny-inpaint"]
    assert models.checkpoint(None).name == "tiny"  # default: first regular checkpoint


def test_manager_budget_evicts_to_fit(tmp_path, tiny_models_dir) -> None:
    budget_gb = 15 / 1024  # one tiny SD1.5 (~11 MB) fits, two do not
    models = manager(tmp_path, tiny_models_dir, cache_models=3, cache_budget_gb=budget_gb)
    models.checkpoint("tiny")
    models.checkpoint("tiny-inpaint")
    assert models.loaded_names == ["tiny-inpaint"]


def test_manager_user_files_and_unknown_names(tmp_path, tiny_models_dir, tiny_model_paths) -> None:
    checkpoints = tmp_path / "models" / "checkpoints" / "mine"
    checkpoints.mkdir(parents=True)
    shutil.copy(tiny_model_paths["tiny-sdxl"], checkpoints / "dream.safetensors")
    models = manager(tmp_path, tiny_models_dir, default_model="mine/dream")
    loaded = models.checkpoint(None)
    assert (loaded.name, loaded.family) == ("mine/dream", "sdxl")
    with pytest.raises(ModelNotFound, match="nothing-like-this"):
        models.checkpoint("nothing-like-this")
    with pytest.raises(ModelNotFound):
        models.checkpoint("../checkpoints/mine/dream")


def write_controlnet_folder(folder: Path, **config: object) -> None:
    """A diffusers ControlNet folder with only its config.json: enough for the inventory and
    for resolving by architecture (its weights are never loaded here)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))


def test_manager_resolves_controlnets_by_type_and_architecture(
    tmp_path, tiny_models_dir, tiny_model_paths
) -> None:
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "controlnet").mkdir()
    shutil.copy(tiny_model_paths["tiny"], root / "checkpoints" / "user.safetensors")
    shutil.copy(tiny_model_paths["tiny-controlnet"], root / "controlnet" / "sd15_canny.safetensors")
    # A full-size SD1.5 depth ControlNet: same family, other architecture than the tiny models.
    write_controlnet_folder(
        root / "controlnet" / "control_sd15_depth",
        block_out_channels=[320, 640, 1280, 1280],
        cross_attention_dim=768,
    )
    models = manager(tmp_path, tiny_models_dir)
    models.checkpoint("tiny")
    assert models.resolve_controlnet("sd15", "canny").name == "sd15_canny"  # a user copy fits
    assert models.resolve_controlnet("sd15", "depth").name == "tiny-controlnet"  # not full-size
    assert models.resolve_controlnet("sdxl", "depth").name == "tiny-sdxl-controlnet"
    with pytest.raises(InvalidRequest, match="does not fit the model: .*320 channels"):
        models.resolve_controlnet("sd15", "depth", "control_sd15_depth")
    with pytest.raises(InvalidRequest, match="ControlNet for SD1.5"):
        models.resolve_controlnet("sdxl", "canny", "sd15_canny")
    models.checkpoint("user")  # a copy of the tiny checkpoint: the same pairs
    assert models.resolve_controlnet("sd15", "canny").name == "sd15_canny"
    assert models.resolve_controlnet("sd15", "depth").name == "tiny-controlnet"
    controlnet = models.controlnet("sd15_canny")
    assert models.controlnet("sd15_canny") is controlnet
    assert_same_weights(build_tiny_controlnet("sd15"), controlnet)


def test_manager_pairs_controlnets_when_the_tiny_files_are_the_models_dir(
    tmp_path, tiny_models_dir
) -> None:
    """The tiny files as a models_dir hide the built-in entries (same names, real paths)."""
    models = ModelManager(
        EngineConfig(models_dir=str(tiny_models_dir), tiny_dir=str(tmp_path / "unused"))
    )
    entry = next(e for e in models.inventory().controlnets if e.name == "tiny-controlnet")
    assert not entry.path.startswith("builtin:")
    models.checkpoint("tiny")
    found = models.resolve_controlnet("sd15", "depth")
    assert (found.name, found.path) == ("tiny-controlnet", entry.path)
    models.checkpoint("tiny-sdxl")
    assert models.resolve_controlnet("sdxl", "canny").name == "tiny-sdxl-controlnet"
    assert not (tmp_path / "unused").exists()  # nothing was written: the files were used


def test_manager_finds_no_controlnet_of_another_architecture(tmp_path, tiny_models_dir) -> None:
    sdxl_full = {
        "block_out_channels": [320, 640, 1280],
        "cross_attention_dim": 2048,
        "addition_embed_type": "text_time",
    }
    root = tmp_path / "models"
    write_controlnet_folder(root / "controlnet" / "sdxl_depth", **sdxl_full)
    models = manager(tmp_path, tiny_models_dir)
    models.checkpoint("tiny-sdxl")
    assert models.resolve_controlnet("sdxl", "depth").name == "tiny-sdxl-controlnet"
    # A full-size file under the built-in's name hides it: now nothing fits the tiny model.
    write_controlnet_folder(root / "controlnet" / "tiny-sdxl-controlnet", **sdxl_full)
    models.inventory(refresh=True)
    with pytest.raises(ModelNotFound, match="depth ControlNet for sdxl that fits"):
        models.resolve_controlnet("sdxl", "depth")


def test_device_and_dtype_resolution() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bfloat16", "cuda") == torch.bfloat16
    with pytest.raises(InvalidRequest, match="device='tpu'"):
        resolve_device("tpu")
    with pytest.raises(InvalidRequest, match="dtype='int8'"):
        resolve_dtype("int8", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequest, match="CUDA"):
            resolve_device("cuda")
    models = ModelManager(EngineConfig(device="cpu", dtype="auto"))
    assert (models.device, models.dtype) == ("cpu", "float32")
