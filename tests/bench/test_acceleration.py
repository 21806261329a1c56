"""The acceleration layer on CPU: eager speed-ups keep pixels, the compiler's state machine."""

from __future__ import annotations

import json
import logging
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.engine.acceleration import (
    AccelerationOptions,
    apply_eager_optimizations,
    snap_to_bucket,
)
from backend.engine.compiled_unet import CompiledUNet, compile_pipeline, prewarm
from backend.engine.errors import InvalidRequest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, sample: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.conv(sample) * scale


def _opts(**kw: object) -> AccelerationOptions:
    base: dict = {"compile": "background", "buckets": ((64, 64),)}
    base.update(kw)
    return AccelerationOptions(**base)


def _sample(side: int = 8) -> torch.Tensor:
    return torch.randn(2, 4, side, side, generator=torch.Generator().manual_seed(1))


def _run_tiny(pipe: object, seed: int = 3) -> np.ndarray:
    out = pipe(  # type: ignore[operator]
        "a red fox",
        negative_prompt="blurry",
        width=64,
        height=64,
        num_inference_steps=2,
        guidance_scale=7.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return np.asarray(out.images[0])


@pytest.fixture(scope="module")
def tiny_pipe():
    from backend.engine.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15")


# -- options ---------------------------------------------------------------------------------
def test_options_guard_names_the_bad_parameter() -> None:
    with pytest.raises(InvalidRequest, match="compile='fast'"):
        AccelerationOptions.from_dict({"compile": "fast"})
    with pytest.raises(InvalidRequest, match="buckets"):
        AccelerationOptions.from_dict({"buckets": [[500, 512]]})
    with pytest.raises(InvalidRequest, match="speed"):
        AccelerationOptions.from_dict({"speed": 11})
    options = AccelerationOptions.from_dict({"compile": "blocking", "buckets": [[768, 512]]})
    assert options.buckets == ((768, 512),)
    assert AccelerationOptions.from_dict(options.to_dict()) == options


def test_snap_to_bucket_rounds_up_to_64() -> None:
    assert snap_to_bucket(512, 512) == (512, 512)
    assert snap_to_bucket(500, 513) == (512, 576)
    with pytest.raises(InvalidRequest, match="size"):
        snap_to_bucket(0, 64)


def test_recommended_is_off_on_cpu_and_on_for_cuda() -> None:
    cpu = AccelerationOptions.recommended("cpu")
    assert (cpu.compile, cpu.channels_last, cpu.fuse_qkv) == ("off", False, False)
    assert AccelerationOptions.recommended("cuda:0").compile == "background"


# -- eager optimisations ---------------------------------------------------------------------
def test_eager_optimisations_keep_pixels(tiny_pipe) -> None:
    from diffusers.models.attention_processor import Attention

    before = _run_tiny(tiny_pipe)
    applied = apply_eager_optimizations(tiny_pipe, AccelerationOptions(), device="cpu")
    assert {"unet:fuse_qkv", "unet:channels_last", "vae:fuse_qkv", "unet:sdpa"} <= set(applied)
    attention = [m for m in tiny_pipe.unet.modules() if isinstance(m, Attention)]
    assert attention and all(m.fused_projections for m in attention)
    conv = tiny_pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    after = _run_tiny(tiny_pipe)
    assert np.abs(after - before).max() < 2e-3
    assert after.std() > 0.01  # a real image, not a flat fill
    # Idempotent: a second pass applies nothing new (no double fusing).
    assert apply_eager_optimizations(tiny_pipe, AccelerationOptions(), device="cpu") == applied


def test_eager_optimisations_cover_controlnets() -> None:
    from backend.engine.tiny import build_tiny_controlnet

    net = build_tiny_controlnet("sd15")
    sample, cond = _sample(8), torch.rand(2, 3, 64, 64)
    states = torch.randn(2, 77, 32)
    with torch.no_grad():
        down, mid = net(sample, 10, states, cond, return_dict=False)
        applied = apply_eager_optimizations(
            SimpleNamespace(controlnet=[net]), AccelerationOptions(), device="cpu"
        )
        down2, mid2 = net(sample, 10, states, cond, return_dict=False)
    assert "controlnet[0]:fuse_qkv" in applied and "controlnet[0]:channels_last" in applied
    assert torch.allclose(mid, mid2, atol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(down, down2, strict=True))


def test_gpu_only_paths_are_noops_with_a_log_line_on_cpu(tiny_pipe, caplog) -> None:
    caplog.set_level(logging.INFO, logger="backend.engine")
    cuda_only = AccelerationOptions(channels_last=False, fuse_qkv=False, sdpa=False)
    assert apply_eager_optimizations(SimpleNamespace(), cuda_only, device="cpu") == []
    assert compile_pipeline(tiny_pipe, AccelerationOptions(compile="background"), "cpu") is None
    assert "forward" not in tiny_pipe.unet.__dict__
    text = caplog.text
    assert "tf32/cudnn.benchmark skipped" in text and "compile skipped" in text


# -- background compiler state machine -------------------------------------------------------
def test_background_compile_serves_eager_first_then_compiled() -> None:
    net, release, built = _Net(), threading.Event(), []

    def slow_compile(fn):
        release.wait(10)
        built.append(fn)
        return lambda *a, **k: fn(*a, **k) + 0  # a distinct callable, same maths

    compiled = CompiledUNet(net, _opts(), compile_fn=slow_compile).install()
    sample = _sample()
    with torch.no_grad():
        expected = net.conv(sample)
        first = net(sample)  # compile is blocked: the eager path answers at once
        assert compiled.calls == {"eager": 1, "compiled": 0}
        assert list(compiled.states().values()) in (["queued"], ["compiling"])
        release.set()
        assert compiled.wait(10)
        assert list(compiled.states().values()) == ["ready"]
        second = net(sample)
    assert compiled.calls == {"eager": 1, "compiled": 1} and len(built) == 1
    assert torch.equal(first, expected) and torch.equal(second, expected)
    compiled.uninstall()
    assert "forward" not in net.__dict__


def test_compile_error_falls_back_to_eager_and_is_logged(caplog) -> None:
    def broken(fn):
        raise RuntimeError("inductor exploded")

    net = _Net()
    compiled = CompiledUNet(net, _opts(), compile_fn=broken).install()
    sample = _sample()
    with torch.no_grad():
        net(sample)
        assert compiled.wait(10)
        out = net(sample)
    assert list(compiled.states().values()) == ["failed"]
    assert compiled.calls == {"eager": 2, "compiled": 0}
    assert torch.equal(out, net.conv(sample).detach())
    assert "inductor exploded" in caplog.text


def test_runtime_failure_of_compiled_twin_falls_back_for_good() -> None:
    runs = {"n": 0}

    def flaky(fn):
        def twin(*a, **k):
            runs["n"] += 1
            if runs["n"] > 2:  # the two warm-up runs pass, real calls fail
                raise RuntimeError("CUDA graph replay failed")
            return fn(*a, **k)

        return twin

    net = _Net()
    compiled = CompiledUNet(net, _opts(compile="blocking"), compile_fn=flaky).install()
    sample = _sample()
    with torch.no_grad():
        out = net(sample)  # blocking: compiled, twin raises, eager answers
        out2 = net(sample)
    assert list(compiled.states().values()) == ["failed"]
    assert compiled.calls == {"eager": 2, "compiled": 0} and runs["n"] == 3
    assert torch.equal(out, out2)


def test_only_configured_buckets_are_compiled() -> None:
    built = []
    net = _Net()
    compiled = CompiledUNet(
        net, _opts(compile="blocking"), compile_fn=lambda fn: built.append(fn) or fn
    ).install()
    with torch.no_grad():
        net(_sample(12))  # 96x96: not a bucket
        net(_sample(8), scale=0.5)  # 64x64: compiled synchronously
        net(_sample(8), scale=0.25)  # same shapes, another float value: same signature
    assert len(built) == 1
    assert compiled.calls == {"eager": 1, "compiled": 2}


def test_real_torch_compile_eager_backend() -> None:
    net = _Net()
    compiled = CompiledUNet(net, _opts(compile_backend="eager")).install()
    sample = _sample()
    with torch.no_grad():
        expected = net.conv(sample)
        net(sample)
        assert compiled.wait(60)
        out = net(sample)
    assert list(compiled.states().values()) == ["ready"]
    assert compiled.calls["compiled"] == 1
    assert torch.allclose(out, expected, atol=1e-6)
    compiled.uninstall()


def test_prewarm_matches_the_diffusers_call_signature(tiny_pipe) -> None:
    from diffusers import DPMSolverMultistepScheduler

    tiny_pipe.scheduler = DPMSolverMultistepScheduler.from_config(tiny_pipe.scheduler.config)
    plain = _run_tiny(tiny_pipe, seed=5)
    options = _opts(compile_backend="eager", buckets=((64, 64),))
    compiled = compile_pipeline(tiny_pipe, options, "cpu", compile_fn=lambda fn: fn)
    assert compiled is not None
    try:
        prewarm(compiled, [(64, 64)], inference_mode=False)
        assert compiled.wait(30)
        out = _run_tiny(tiny_pipe, seed=5)
        # Two steps with CFG: both UNet calls hit the pre-warmed signature, none ran eager.
        assert compiled.calls == {"eager": 0, "compiled": 2}
        np.testing.assert_allclose(out, plain, atol=1e-5)
        # The engine runs pipelines under inference_mode: a different, matching signature.
        prewarm(compiled, [(64, 64)], inference_mode=True)
        assert compiled.wait(30)
        with torch.inference_mode():
            np.testing.assert_allclose(_run_tiny(tiny_pipe, seed=5), plain, atol=1e-5)
        assert compiled.calls == {"eager": 0, "compiled": 4}
    finally:
        compiled.uninstall()


@pytest.mark.slow
def test_accel_check_tiny_end_to_end() -> None:
    from backend.bench.accel_check import run_check

    stages: list[list[str]] = []
    result = run_check(
        tiny=True,
        size=64,
        steps=2,
        repeats=1,
        compile_timeout=300,
        on_result=lambda r: stages.append(list(r["stage_s"])),
    )
    assert result["errors"] == {}
    assert stages[-1] == ["plain", "eager", "while_compiling", "compiled"]
    assert [len(s) for s in stages] == [1, 2, 3, 4]  # the JSON rewritten after every stage
    assert set(result["compile_states"].values()) == {"ready"}
    assert result["calls"]["compiled"] >= 2 and result["compiled_s"] > 0
    assert "unet:fuse_qkv" in result["applied"]


def test_accel_check_writes_a_failed_stage_into_its_json(tmp_path) -> None:
    """A stage that raises (60 px: not a size the pipeline takes) writes its error into the
    JSON; the stages that need it are skipped, not run on a broken state."""
    from backend.bench.accel_check import run_check
    from backend.bench.report import write_json

    out = tmp_path / "accel.json"
    result = run_check(
        tiny=True,
        size=60,
        steps=2,
        repeats=1,
        compile_timeout=5,
        on_result=lambda r: write_json(r, out),
    )
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(result))
    assert list(written["errors"]) == ["plain"] and "60" in written["errors"]["plain"]
    assert list(written["stage_s"]) == ["plain"] and "eager_s" not in written


@pytest.mark.gpu
def test_cuda_eager_and_inductor_compile_match_plain() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from diffusers import DPMSolverMultistepScheduler

    from backend.engine.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd15").to("cuda", torch.float16)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    plain = _run_tiny(pipe, seed=9)
    applied = apply_eager_optimizations(pipe, AccelerationOptions(), "cuda")
    assert "tf32" in applied and torch.backends.cudnn.benchmark
    options = AccelerationOptions(compile="blocking", buckets=((64, 64),))
    compiled = compile_pipeline(pipe, options, "cuda")
    assert compiled is not None
    try:
        out = _run_tiny(pipe, seed=9)
        assert set(compiled.states().values()) == {"ready"}
        assert compiled.calls["compiled"] == 2 and compiled.calls["eager"] == 0
        np.testing.assert_allclose(out, plain, atol=3e-2)
    finally:
        compiled.uninstall()
