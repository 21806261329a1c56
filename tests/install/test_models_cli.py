"""``diffusion-layers models list | download | verify`` and the models-folder rules."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from backend import catalog
from backend.cli import main


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake_hub.state.auto_content = True
    return fake_hub


def run_cli(*argv: str) -> int:
    return main(["models", *argv])


def test_download_puts_the_file_in_its_folder_and_verify_passes(hub_env, tmp_path, capsys):
    models = tmp_path / "models"
    entry = catalog.find_entry("controlnet-canny")

    assert run_cli("download", "--models-dir", str(models), "controlnet-canny") == 0

    target = models / "controlnet" / entry.file_name
    assert target.is_file() and target.stat().st_size == 64_000
    assert sorted(p.name for p in models.iterdir()) == [
        ".downloads.json",
        "checkpoints",
        "controlnet",
        "lora",
        "text_encoders",  # Flux.1 / Z-Image text encoders (ComfyUI layout)
        "vae",
    ]
    manifest = json.loads((models / ".downloads.json").read_text())
    record = manifest[f"controlnet/{entry.file_name}"]
    assert record["verified_against"] == "hub-etag"
    assert record["url"] == f"{hub_env.endpoint}/{entry.repo}/resolve/main/{entry.filename}"
    assert "checked against hub-etag" in capsys.readouterr().err

    assert run_cli("verify", "--models-dir", str(models)) == 0
    assert "OK          controlnet-canny" in capsys.readouterr().out


def test_verify_finds_a_corrupted_file(hub_env, tmp_path, capsys):
    models = tmp_path / "models"
    assert run_cli("download", "--models-dir", str(models), "controlnet-depth") == 0
    target = catalog.find_entry("controlnet-depth").local_path(models)
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    capsys.readouterr()

    assert run_cli("verify", "--models-dir", str(models), "controlnet-depth") == 1
    assert "MISMATCH    controlnet-depth" in capsys.readouterr().out


def test_verify_of_a_named_missing_model_fails(tmp_path, capsys):
    assert run_cli("verify", "--models-dir", str(tmp_path), "dreamshaper-8") == 1
    assert "MISSING" in capsys.readouterr().out


def test_download_default_fetches_the_default_set_once(hub_env, tmp_path, capsys):
    models = tmp_path / "m"

    assert run_cli("download", "--models-dir", str(models), "default") == 0
    first = len(hub_env.state.requests)
    assert run_cli("download", "--models-dir", str(models), "default") == 0

    defaults = catalog.default_set()
    assert {e.kind for e in defaults} == {"checkpoint", "controlnet"}
    assert any(e.inpaint for e in defaults)
    for entry in defaults:
        assert entry.local_path(models).is_file(), entry.name
    assert first == 2 * len(defaults)  # resolve + cdn per file
    assert len(hub_env.state.requests) == first  # second run: all present, nothing fetched
    assert "already present" in capsys.readouterr().err


def test_unknown_name_downloads_nothing(hub_env, tmp_path, capsys):
    code = run_cli("download", "--models-dir", str(tmp_path), "controlnet-canny", "nope")

    assert code == 2
    assert "model='nope'" in capsys.readouterr().err
    assert hub_env.state.requests == [] and list(tmp_path.iterdir()) == []


def test_no_network_says_so_and_how_to_use_local_files(tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")

    code = run_cli("download", "--models-dir", str(tmp_path), "--retries", "1", "controlnet-tile")

    err = capsys.readouterr().err
    assert code == 1
    assert "reachable" in err and "copy them into" in err and "--model tiny" in err
    assert not catalog.find_entry("controlnet-tile").local_path(tmp_path).exists()


def test_gated_repo_error_mentions_hf_token(hub_env, tmp_path, capsys):
    entry = catalog.find_entry("sdxl-base-1.0")
    hub_env.state.status[entry.filename] = 401

    assert run_cli("download", "--models-dir", str(tmp_path), entry.name) == 1
    assert "HF_TOKEN" in capsys.readouterr().err


def test_list_shows_status_and_own_files(hub_env, tmp_path, capsys):
    assert run_cli("download", "--models-dir", str(tmp_path), "controlnet-scribble") == 0
    (tmp_path / "checkpoints" / "my_model.safetensors").write_bytes(b"mine")
    part = catalog.find_entry("controlnet-lineart").local_path(tmp_path)
    part.with_name(part.name + ".part").write_bytes(b"half")
    capsys.readouterr()

    assert run_cli("list", "--models-dir", str(tmp_path)) == 0

    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[2:] if line.strip()}
    assert rows["controlnet-scribble"] == "present"
    assert rows["controlnet-lineart"] == "partial"
    assert rows["dreamshaper-8"] == "missing"
    assert "checkpoints/my_model.safetensors" in out
    assert f"Models folder: {tmp_path}" in out


def test_models_dir_precedence(tmp_path):
    env = {"HOME": str(tmp_path), catalog.MODELS_ENV: str(tmp_path / "from-env")}

    assert catalog.resolve_models_dir("/explicit", env) == Path("/explicit")
    assert catalog.resolve_models_dir(None, env) == tmp_path / "from-env"
    assert catalog.resolve_models_dir(None, {"HOME": str(tmp_path)}) == (
        tmp_path / ".local" / "share" / "diffusion-layers" / "models"
    )


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_DATA_HOME": "/xdg"}, "/xdg/diffusion-layers/models"),
        ("darwin", {}, "/home/u/Library/Application Support/diffusion-layers/models"),
        ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/diffusion-layers/models"),
    ],
)
def test_default_models_dir_per_platform(platform, env, expected):
    got = catalog.default_models_dir(env, platform=platform, home=Path("/home/u"))
    assert got == Path(expected)


def test_catalog_only_uses_the_hub_and_names_are_unique(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    names = [entry.name for entry in catalog.entries()]
    assert len(names) == len(set(names))
    for entry in catalog.entries():
        assert entry.url().startswith("https://huggingface.co/"), entry.name
        assert entry.kind in catalog.FOLDERS and entry.family in catalog.FAMILIES
        assert entry.sha256 is None or len(entry.sha256) == 64
        if entry.kind == "controlnet":
            assert entry.control_type, entry.name


def test_hub_url_rejects_bad_repo_ids():
    with pytest.raises(catalog.CatalogError, match="repo="):
        catalog.hub_url("no-owner", "f.safetensors")
