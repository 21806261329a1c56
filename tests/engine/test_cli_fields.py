"""The command line names refused parameters with the same canonical paths as the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main


def test_cli_names_lora_and_vae_fields_canonically(
    tmp_path: Path, tiny_models_dir: Path, capsys, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    (cache / "diffusion-layers").mkdir(parents=True)
    (cache / "diffusion-layers" / "tiny-models").symlink_to(tiny_models_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    base = ["generate", "--model", "tiny", "--prompt", "x", "--width", "64", "--height", "64",
            "--device", "cpu", "--out", str(tmp_path / "o.png")]  # fmt: skip
    code = main([*base, "--lora", "tiny-lora:0.5", "--lora", "no-such-lora:1"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: loras[1].name: ") and "no-such-lora" in last
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("spec", ["tiny-lora:abc"])
def test_cli_usage_errors_stay_one_line(tmp_path: Path, capsys, spec) -> None:
    code = main(["generate", "--model", "tiny", "--prompt", "x", "--lora", spec,
                 "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_vae_option_is_checked_like_the_api(
    tmp_path: Path, tiny_models_dir: Path, capsys, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    (cache / "diffusion-layers").mkdir(parents=True)
    (cache / "diffusion-layers" / "tiny-models").symlink_to(tiny_models_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    code = main(["generate", "--model", "tiny", "--vae", "no-such-vae", "--prompt", "x",
                 "--width", "64", "--height", "64", "--device", "cpu",
                 "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: vae: ") and "no-such-vae" in last
