"""The acceleration layer wired into the engine, on the CPU: the same pixels as without it,
LoRAs still work on a fused/compiled UNet, and a compiled UNet serves its size bucket."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.acceleration import AccelerationOptions  # noqa: E402
from backend.engine.compiled_unet import CompiledUNet  # noqa: E402
from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import InvalidRequest  # noqa: E402
from backend.engine.types import EngineConfig, GenerationRequest, LoraInput  # noqa: E402

W = H = 64
LORA = [LoraInput("tiny-lora", 1.0)]


def make_engine(tiny_models_dir: Path, **config: Any) -> Engine:
    return Engine(
        EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir), **config)
    )


def request(**changes: object) -> GenerationRequest:
    base: dict = {
        "mode": "txt2img",
        "width": W,
        "height": H,
        "prompt": "a lighthouse",
        "steps": 2,
        "seed": 11,
        "model": "tiny",
        "sampler": "euler",
    }
    base.update(changes)
    return GenerationRequest(**base)


def pixels(engine: Engine, **changes: object) -> np.ndarray:
    return engine.generate(request(**changes))[0].image.astype(int)


@pytest.fixture(scope="module")
def plain(tiny_models_dir: Path) -> dict[str, np.ndarray]:
    """What the engine makes with no speed-ups, with and without the LoRA."""
    nothing = AccelerationOptions(sdpa=False, fuse_qkv=False, channels_last=False, tf32=False)
    engine = make_engine(tiny_models_dir, acceleration=nothing)
    return {"base": pixels(engine), "lora": pixels(engine, loras=LORA)}


def test_cpu_defaults_change_nothing(tiny_models_dir: Path, plain: dict) -> None:
    engine = make_engine(tiny_models_dir, compile="background")
    options = engine.acceleration
    assert (options.compile, options.fuse_qkv, options.channels_last) == (
        "background",
        False,
        False,
    )
    assert np.array_equal(pixels(engine), plain["base"])
    # inductor compiling is a CUDA path: nothing is installed on the CPU
    assert engine._pipelines.compiled is None
    assert "forward" not in engine.models.checkpoint("tiny").pipe.unet.__dict__


def test_fused_attention_keeps_pixels_and_loras(tiny_models_dir: Path, plain: dict) -> None:
    options = AccelerationOptions(fuse_qkv=True, channels_last=True, tf32=False)
    engine = make_engine(tiny_models_dir, acceleration=options)
    assert np.abs(pixels(engine) - plain["base"]).max() <= 1
    unet = engine.models.checkpoint("tiny").pipe.unet
    assert "fuse_qkv" in unet._dl_acceleration
    # The LoRA must act on the UNet too (fused projections would bypass its layers) ...
    assert np.abs(plain["lora"] - plain["base"]).mean() > 0.5
    assert np.abs(pixels(engine, loras=LORA) - plain["lora"]).max() <= 1
    # ... and afterwards the fused fast path is back, with the same pixels as before.
    assert type(next(iter(unet.attn_processors.values()))).__name__ == "FusedAttnProcessor2_0"
    assert np.abs(pixels(engine) - plain["base"]).max() <= 1


def test_compiled_unet_serves_its_bucket_and_steps_aside_for_loras(
    tiny_models_dir: Path, plain: dict
) -> None:
    # The "eager" dynamo backend compiles on any device (inductor is CUDA-only here).
    options = AccelerationOptions(
        compile="blocking",
        compile_backend="eager",
        buckets=((W, H),),
        fuse_qkv=False,
        channels_last=False,
        tf32=False,
    )
    engine = make_engine(tiny_models_dir, acceleration=options)
    # 1. The first request compiles its bucket (blocking), then runs compiled.
    assert np.abs(pixels(engine) - plain["base"]).max() <= 1
    compiled = engine._pipelines.compiled
    assert isinstance(compiled, CompiledUNet)
    assert list(compiled.states().values()) == ["ready"]
    assert compiled.calls["compiled"] > 0 and compiled.calls["eager"] == 0
    # 2. A LoRA job runs the eager UNet (no recompiling on the artist's time), correctly.
    before = dict(compiled.calls)
    assert np.abs(pixels(engine, loras=LORA) - plain["lora"]).max() <= 1
    assert compiled.calls == before
    # 3. Then the compiled path again; a size outside the buckets stays eager.
    assert np.abs(pixels(engine) - plain["base"]).max() <= 1
    assert compiled.calls["compiled"] > before["compiled"]
    pixels(engine, width=128, height=64)  # denoised at 88x48
    assert compiled.calls["eager"] > 0
    # 4. Unloading the model stops its compiler and restores the plain forward.
    unet = engine.models.checkpoint("tiny").pipe.unet
    engine.models.unload("tiny")
    deadline = time.monotonic() + 30
    while "forward" in unet.__dict__ and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "forward" not in unet.__dict__
    assert not any(t.name == "unet-compile-stop" for t in threading.enumerate())


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"compile": "always"}, "compile"),
        ({"acceleration": AccelerationOptions(max_compiled=0)}, "max_compiled"),
    ],
)
def test_bad_options_stop_the_engine_at_start(
    tiny_models_dir: Path, config: dict, field: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        make_engine(tiny_models_dir, **config)
    assert info.value.field == field


def test_serve_compile_flag_reaches_the_engine_config() -> None:
    import argparse

    from backend.commands import serve
    from backend.settings import Settings, SettingsError

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--compile", "background"])
    settings = Settings.from_env_and_args(args, env={})
    assert settings.engine_config().compile == "background"
    assert Settings.from_env_and_args(parser.parse_args(["serve"]), env={}).compile == "off"
    with pytest.raises(SettingsError, match="compile='sometimes'"):
        Settings(compile="sometimes").check()
