"""Settings: JSON load/save, precedence of file < environment < flags, checks."""

from __future__ import annotations

import argparse

import pytest

from backend.settings import TOKEN_ENV, Settings, SettingsError


def test_save_load_round_trip(tmp_path):
    settings = Settings(port=9000, token="abcdefgh12", default_model="tiny", max_jobs_kept=3)
    path = tmp_path / "settings.json"
    settings.save(path)
    assert Settings.load(path) == settings


def test_load_rejects_unknown_keys_and_bad_json(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"port": 1, "colour": "red"}')
    with pytest.raises(SettingsError, match="colour"):
        Settings.load(path)
    path.write_text("{")
    with pytest.raises(SettingsError, match="not valid JSON"):
        Settings.load(path)
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load(tmp_path / "missing.json")


def test_precedence_file_env_flags(tmp_path):
    path = tmp_path / "s.json"
    Settings(port=9000, token="from-file-123", device="cuda", output_dir="/x").save(path)
    args = argparse.Namespace(config=str(path), port=None, device="cpu", model="tiny", preload=True)
    settings = Settings.from_env_and_args(args, env={TOKEN_ENV: "from-env-456"})
    assert settings.port == 9000  # file
    assert settings.token == "from-env-456"  # env beats file
    assert settings.device == "cpu"  # flag beats file
    assert settings.default_model == "tiny" and settings.preload
    assert settings.output_dir == "/x"


def test_engine_config():
    config = Settings(models_dir="/m", default_model="tiny", device="cpu", allow_pickle=True)
    engine = config.engine_config()
    assert (engine.models_dir, engine.default_model, engine.device) == ("/m", "tiny", "cpu")
    assert engine.allow_pickle is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 70000),
        ("token", "short"),
        ("max_request_mb", 0),
        ("max_image_pixels", 1),
        ("job_ttl_s", 0),
        ("max_jobs_kept", 0),
        ("keepalive_s", -1),
        ("ssl_certfile", "cert.pem"),
    ],
)
def test_check_names_the_bad_setting(field, value):
    with pytest.raises(SettingsError, match=field):
        Settings(**{field: value}).check()


def test_serve_and_models_cli_share_one_models_folder(tmp_path):
    env = {"DIFFUSION_LAYERS_MODELS": str(tmp_path / "m")}
    settings = Settings.from_env_and_args(argparse.Namespace(config=None), env=env)
    assert settings.models_dir == str(tmp_path / "m")
    explicit = argparse.Namespace(config=None, models_dir=str(tmp_path / "x"))
    assert Settings.from_env_and_args(explicit, env=env).models_dir == str(tmp_path / "x")
