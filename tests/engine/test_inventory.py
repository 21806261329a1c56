"""The models folder scan and safe name -> path resolution."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from backend.engine.errors import ModelNotFound
from backend.engine.inventory import control_type_from_name, resolve_model_path, scan_models
from backend.engine.model_manager import builtin_inventory


@pytest.fixture()
def models_dir(tmp_path: Path, tiny_model_paths: dict[str, str]) -> Path:
    root = tmp_path / "models"
    for sub in ("checkpoints/anime", "controlnet", "lora", "vae", "checkpoints/.trash"):
        (root / sub).mkdir(parents=True)
    ckpt = root / "checkpoints"
    shutil.copy(tiny_model_paths["tiny"], ckpt / "base.safetensors")
    shutil.copy(tiny_model_paths["tiny-sdxl-inpaint"], ckpt / "anime" / "xl-fill.safetensors")
    shutil.copy(tiny_model_paths["tiny"], ckpt / ".hidden.safetensors")
    shutil.copy(tiny_model_paths["tiny"], ckpt / ".trash" / "old.safetensors")
    (ckpt / "legacy.ckpt").write_bytes(b"pickle")
    (ckpt / "notes.txt").write_text("not a model")
    (ckpt / "broken.safetensors").write_bytes(b"\x00" * 64)
    (ckpt / "anime" / "loop").symlink_to(ckpt, target_is_directory=True)  # must not hang
    folder = ckpt / "diffusers-xl"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(
        json.dumps({"in_channels": 4, "addition_embed_type": "text_time"})
    )
    cn = root / "controlnet"
    shutil.copy(tiny_model_paths["tiny-controlnet"], cn / "control_v11p_sd15_canny.safetensors")
    shutil.copy(tiny_model_paths["tiny-sdxl-controlnet"], cn / "xl_depth_mid.safetensors")
    shutil.copy(tiny_model_paths["tiny-controlnet"], cn / "union.safetensors")
    shutil.copy(tiny_model_paths["tiny-lora"], root / "lora" / "style.safetensors")
    shutil.copy(tiny_model_paths["tiny-lora"], root / "vae" / "ft-mse.safetensors")
    return root


def test_scan_lists_models_with_family_and_type(models_dir: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        inventory = scan_models(models_dir)
    checkpoints = {e.name: (e.family, e.inpaint) for e in inventory.checkpoints}
    assert checkpoints == {
        "base": ("sd15", False),
        "anime/xl-fill": ("sdxl", True),
        "diffusers-xl": ("sdxl", False),
    }
    controlnets = {e.name: (e.family, e.type) for e in inventory.controlnets}
    assert controlnets == {
        "control_v11p_sd15_canny": ("sd15", "canny"),
        "xl_depth_mid": ("sdxl", "depth"),
        "union": ("sd15", "any"),
    }
    assert [(e.name, e.family) for e in inventory.loras] == [("style", "sd15")]
    assert [vae.name for vae in inventory.vaes] == ["ft-mse"]
    assert "broken" in caplog.text  # skipped with a warning, not a crash
    base = next(e for e in inventory.checkpoints if e.name == "base")
    assert Path(base.path) == models_dir / "checkpoints" / "base.safetensors"


def test_pickles_listed_only_when_allowed(models_dir: Path) -> None:
    names = {e.name for e in scan_models(models_dir, allow_pickle=True).checkpoints}
    assert "legacy" in names
    assert "legacy" not in {e.name for e in scan_models(models_dir).checkpoints}


def test_missing_folder_is_empty_and_extra_entries_are_merged(tmp_path: Path, models_dir) -> None:
    assert scan_models(tmp_path / "nowhere").checkpoints == []
    assert scan_models(None, builtin_inventory()).checkpoints[0].name == "tiny"
    shutil.copy(
        models_dir / "checkpoints" / "base.safetensors",
        models_dir / "checkpoints" / "tiny.safetensors",
    )
    merged = scan_models(models_dir, builtin_inventory())
    tiny = [e for e in merged.checkpoints if e.name == "tiny"]
    assert len(tiny) == 1 and not tiny[0].path.startswith("builtin:")  # the user's file wins
    assert "tiny-sdxl" in {e.name for e in merged.checkpoints}


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("control_v11p_sd15_scribble", "scribble"),
        ("control_v11p_sd15_lineart_anime", "lineart"),
        ("control_v11p_sd15_softedge", "softedge"),
        ("sd_controlnet_hed", "softedge"),
        ("pidinet_xl", "softedge"),
        ("diffusers_xl_canny_full", "canny"),
        ("control_v11f1p_sd15_depth", "depth"),
        ("control_v11p_sd15_normalbae", "normal"),
        ("thibaud_xl_openpose", "pose"),
        ("some_pose_model", "pose"),
        ("control_v11p_sd15_inpaint", "inpaint"),
        ("control_v11p_sd15_seg", "seg"),
        ("control_v11p_sd15_mlsd", "mlsd"),
        ("control_v11f1e_sd15_tile", "tile"),
        ("controlnet-union-sdxl", "any"),
        ("canny/union", "any"),  # only the file name counts
    ],
)
def test_control_type_from_name(file_name: str, expected: str) -> None:
    assert control_type_from_name(file_name) == expected


def test_resolve_model_path(models_dir: Path) -> None:
    assert resolve_model_path(models_dir, "checkpoints", "base").name == "base.safetensors"
    nested = resolve_model_path(models_dir, "checkpoints", "anime/xl-fill")
    assert nested == (models_dir / "checkpoints" / "anime" / "xl-fill.safetensors").absolute()
    assert resolve_model_path(models_dir, "checkpoints", "diffusers-xl").is_dir()
    assert resolve_model_path(models_dir, "controlnet", "union").is_file()
    with pytest.raises(ModelNotFound, match="nope"):
        resolve_model_path(models_dir, "checkpoints", "nope")


@pytest.mark.parametrize(
    "name",
    [
        "../lora/style",
        "anime/../../lora/style",
        "/etc/passwd",
        "C:/Windows/win",
        "anime\\xl-fill",
        "base\x00.txt",
        "./base",
        "anime//xl-fill",
        "",
        "   ",
        "..",
    ],
)
def test_path_tricks_are_refused(models_dir: Path, name: str) -> None:
    with pytest.raises(ModelNotFound, match="Invalid model name"):
        resolve_model_path(models_dir, "checkpoints", name)


def test_unknown_kind_is_a_programming_error(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="kind='weights'"):
        resolve_model_path(models_dir, "weights", "base")
