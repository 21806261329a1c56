"""The live scenario (``sd15_live_512``) on the tiny models, CPU: both sides, frame by frame.

UNet calls are counted with a global forward hook (the real modules, no mocks): plain diffusers
runs on this thread, our server's frames on its worker thread. Each frame must run exactly the
scenario's denoising steps on both sides, and every frame must start from a different latent,
i.e. a fresh canvas reached the model each time (no frame served from a cache).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict

import numpy as np
import pytest
import torch

from backend.bench.harness import BenchOptions, check_options, run_bench
from backend.bench.scenarios import select
from backend.protocol import LiveParams

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LIVE = "sd15_live_512"
FRAMES = 3


@pytest.fixture
def unet_calls():
    """{"plain"|"ours": [the latent each UNet call got]}, filled while the test runs."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    calls: dict[str, list[np.ndarray]] = defaultdict(list)
    main = threading.main_thread()

    def hook(module, args, _output) -> None:
        if isinstance(module, UNet2DConditionModel):
            side = "plain" if threading.current_thread() is main else "ours"
            calls[side].append(args[0].detach().to("cpu", torch.float32).numpy().copy())

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def test_live_scenario_runs_frames_through_the_live_route(tmp_path, unet_calls) -> None:
    options = BenchOptions(
        tiny=True,
        repeats=1,
        live_frames=FRAMES,
        scenarios=[LIVE],
        models_dir=str(tmp_path / "models"),
    )
    report = run_bench(options)
    assert report["errors"] == {}
    entry = report["scenarios"][LIVE]
    # 1. Both sides report fps from their own median round trip.
    assert entry["ours_fps"] == pytest.approx(1.0 / entry["ours_s"], rel=0.02)
    assert entry["plain_fps"] == pytest.approx(1.0 / entry["plain_s"], rel=0.02)
    # 2. Our frames went through the live route: the session itself counted them (first frame,
    # one warm-up, the timed frames), and ran the LCM sampler with 4 steps.
    assert entry["ours_frames"] == entry["plain_frames"] == FRAMES
    assert entry["ours_session_frames"] == FRAMES + 2
    assert (entry["ours_sampler"], entry["ours_steps"]) == ("lcm", 4)
    assert (entry["plain_sampler"], entry["plain_num_inference_steps"]) == ("LCMScheduler", 8)
    assert 0 < entry["ours_render_s"] <= entry["ours_s"]
    # 3. The same denoising work on both sides: 4 UNet calls per frame (no CFG: batch 1, one
    # call per step), FRAMES + 2 frames each.
    frames = FRAMES + 2
    assert len(unet_calls["plain"]) == 4 * frames
    assert len(unet_calls["ours"]) == 4 * frames
    # 4. A fresh canvas every frame: the first step of every frame sees a different latent.
    for side in ("plain", "ours"):
        firsts = {hashlib.sha1(sample.tobytes()).hexdigest() for sample in unet_calls[side][::4]}
        assert len(firsts) == frames, side
    # 5. Plain and ours saw the same canvases in the same order (same seed, same frames).
    for plain, ours in zip(unet_calls["plain"][::4], unet_calls["ours"][::4], strict=True):
        np.testing.assert_allclose(plain, ours, atol=1e-3)


def test_live_scenario_describes_a_valid_live_frame() -> None:
    (scenario,) = select([LIVE], tiny=False)
    params = LiveParams.model_validate(scenario.live_params())
    assert (params.width, params.height, params.steps) == (512, 512, 4)
    assert (params.sampler, params.cfg_scale, params.strength) == ("lcm", 1.0, 0.5)
    kwargs = scenario.plain_kwargs(scenario.inputs())
    assert kwargs["guidance_scale"] == 1.0
    # plain img2img runs int(num_inference_steps * strength) denoising steps: 4 as well.
    assert int(kwargs["num_inference_steps"] * kwargs["strength"]) == 4
    # Every frame is a new canvas: one more dab each, the rest untouched.
    canvases = [scenario.inputs(frame)["image"] for frame in range(4)]
    for before, after in zip(canvases[:-1], canvases[1:], strict=True):
        changed = np.any(before != after, axis=-1)
        assert 0 < changed.mean() < 0.05
    assert (canvases[-1][..., 3] == 255).all()


def test_live_frames_guard_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="live_frames=0"):
        check_options(BenchOptions(live_frames=0))
