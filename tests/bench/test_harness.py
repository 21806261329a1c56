"""The benchmark harness end to end on CPU with the tiny models (``--tiny``): it must not rot."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from backend.bench.harness import BenchOptions, check_options
from backend.bench.report import Timing, format_table, scenario_entry
from backend.bench.scenarios import NAMES, NEGATIVE, SCENARIOS, TRANSFER, select, tiny_scenarios
from backend.bench.server import decode_result, encode_part
from backend.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIELDS = {"plain_s", "ours_s", "ratio", "min_s", "max_s"}


def _bench(tmp_path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "bench.json"
    argv = ["bench", "--tiny", "--repeats", "1", "--transfer-size", "128", "--out", str(out)]
    code = main(argv + ["--models-dir", str(tmp_path / "models"), *extra])
    return code, json.loads(out.read_text())


def test_tiny_bench_runs_both_sides_and_writes_the_report(tmp_path) -> None:
    code, report = _bench(
        tmp_path, "--scenario", "sd15_controlnet_512", "--scenario", TRANSFER, "--table",
        str(tmp_path / "table.md"),
    )  # fmt: skip
    assert code == 0 and report["errors"] == {}
    assert set(report["scenarios"]) == {"sd15_controlnet_512", TRANSFER}
    assert report["device"] and report["versions"]["diffusers"] != "missing"
    for name, entry in report["scenarios"].items():
        assert FIELDS <= set(entry), name
        assert entry["plain_s"] > 0 and entry["ours_s"] > 0
        assert entry["min_s"] <= entry["ours_s"] <= entry["max_s"]
        assert entry["ratio"] == pytest.approx(entry["ours_s"] / entry["plain_s"], rel=1e-2)
    control = report["scenarios"]["sd15_controlnet_512"]
    assert control["plain_first_s"] > 0 and control["ours_first_s"] > 0
    transfer = report["scenarios"][TRANSFER]
    assert (transfer["plain_codec"], transfer["ours_codec"]) == ("png", "raw")
    assert transfer["ours_bytes"] > 2 * 128 * 128 * 4  # raw both ways
    assert transfer["size"] == 128
    table = (tmp_path / "table.md").read_text()
    assert "| sd15_controlnet_512 |" in table and f"| {TRANSFER} |" in table


@pytest.mark.slow
def test_tiny_bench_every_scenario(tmp_path) -> None:
    code, report = _bench(tmp_path)
    assert code == 0, report["errors"]
    assert list(report["scenarios"]) == list(NAMES)
    assert report["scenarios"]["sd15_live_512"]["ours_fps"] > 0
    for name in ("flux2_klein_edit_1024", "qwen_layered_1024"):  # issue #17's modes, both sides
        entry = report["scenarios"][name]
        assert entry["plain_s"] > 0 and entry["ours_s"] > 0, entry


def test_options_guards_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="scenario='sd3_txt2img'"):
        check_options(BenchOptions(scenarios=["sd3_txt2img"]))
    with pytest.raises(ValueError, match="repeats=0"):
        check_options(BenchOptions(repeats=0))
    with pytest.raises(ValueError, match="transfer_size=100"):
        check_options(BenchOptions(transfer_size=100))


def test_cli_refuses_an_unknown_scenario(tmp_path, caplog) -> None:
    code = main(["bench", "--tiny", "--scenario", "nope", "--out", str(tmp_path / "x.json")])
    assert code == 2 and "scenario='nope'" in caplog.text
    assert not (tmp_path / "x.json").exists()


def test_scenarios_describe_the_same_work_on_both_sides() -> None:
    assert [s.name for s in SCENARIOS] + [TRANSFER] == list(NAMES)
    for scenario in SCENARIOS + tiny_scenarios():
        params, inputs = scenario.job_params(), scenario.inputs()
        kwargs = scenario.plain_kwargs(inputs)
        # The same denoising steps actually run: plain img2img runs int(steps * strength).
        assert int(kwargs["num_inference_steps"] * kwargs.get("strength", 1.0)) == params["steps"]
        assert params["sampler"] == scenario.sampler
        # CFG: guidance_scale, or true CFG (a negative pass) for Qwen-Image-Layered
        assert kwargs.get("guidance_scale", kwargs.get("true_cfg_scale")) == params["cfg_scale"]
        for array in inputs.values():
            assert array.shape[:2] == (scenario.height, scenario.width)
        if scenario.mode == "edit":  # the region, then each reference, on both sides
            assert len(kwargs["image"]) == 1 + scenario.references
            assert [c["image"] for c in params["controls"]] == [
                f"control_{i}" for i in range(scenario.references)
            ]
            assert all(c["type"] == "reference" and c["model"] is None for c in params["controls"])
        if scenario.mode == "layers":
            assert kwargs["layers"] == params["layers"] == scenario.layers
            assert kwargs["image"].mode == "RGBA" and kwargs["negative_prompt"] == NEGATIVE
        if scenario.mode == "inpaint":
            assert kwargs["mask_image"].size == (scenario.width, scenario.height)
        if scenario.controlnet:
            assert params["controls"][0]["image"] in inputs
    assert select(["sdxl_txt2img_1024"], tiny=False)[0].width == 1024
    assert select(None, tiny=True)[0].width == 64


def test_codecs_round_trip_pixels() -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (16, 24, 4), dtype=np.uint8)
    for codec in ("raw", "png"):
        _name, data, _type = encode_part("image", rgba, codec)
        np.testing.assert_array_equal(decode_result(data, codec, 24, 16), rgba)
    _n, raw, content_type = encode_part("mask", rgba[..., 0], "raw")
    assert content_type == "image/x-raw-gray8" and len(raw) == 16 * 24


def test_report_entry_and_table() -> None:
    entry = scenario_entry(Timing([2.0, 1.0, 3.0], first_s=5.0), Timing([0.5, 0.7, 0.6]))
    assert entry["plain_s"] == 2.0 and entry["ours_s"] == 0.6
    assert (entry["min_s"], entry["max_s"], entry["ratio"]) == (0.5, 0.7, 0.3)
    only_plain = scenario_entry(Timing([1.0]), None)
    assert "ratio" not in only_plain and "ours_s" not in only_plain
    report = {
        "device": "test",
        "versions": {},
        "scenarios": {"a": entry},
        "errors": {"b:ours": "RuntimeError: boom"},
    }
    table = format_table(report)
    assert "| a | 2.000 | 0.600 | 0.30 |" in table and "boom" in table


def test_full_size_architectures_match_the_real_models() -> None:
    """Random weights must have the real shapes, or GPU timings mean nothing (meta: no memory)."""
    import torch

    from backend.bench.weights import build_full_controlnet, build_full_pipeline

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    sd15 = build_full_pipeline("sd15", False, "meta", torch.float16)
    assert (count(sd15.unet), count(sd15.vae)) == (859_520_964, 83_653_863)
    assert count(sd15.text_encoder) == 123_060_480  # CLIP ViT-L/14 text tower
    inpaint = build_full_pipeline("sd15", True, "meta", torch.float16)
    assert inpaint.unet.config.in_channels == 9
    sdxl = build_full_pipeline("sdxl", False, "meta", torch.float16)
    assert count(sdxl.unet) == 2_567_463_684
    assert count(sdxl.text_encoder_2) == 694_659_840  # OpenCLIP bigG text tower
    assert count(build_full_controlnet("meta", torch.float16)) == 361_279_120


def test_full_size_edit_and_layers_architectures_match_the_real_models() -> None:
    """FLUX.2 klein 4B (transformer 7.2 GiB in bf16, Qwen3-4B) and Qwen-Image-Layered (the 20B
    Qwen-Image MMDiT, Qwen2.5-VL-7B with its vision tower, the RGBA VAE), on meta."""
    import torch

    from backend.bench.bench_edit import build_edit_pipeline

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    klein = build_edit_pipeline("flux2_klein", False, "meta", torch.bfloat16)
    assert (count(klein.transformer), count(klein.text_encoder)) == (3_875_544_576, 4_022_468_096)
    assert klein.vae.config.latent_channels == 32 and klein.config.is_distilled
    layered = build_edit_pipeline("qwen_image_layered", False, "meta", torch.bfloat16)
    assert count(layered.transformer) == 20_430_407_232
    assert count(layered.text_encoder) == 8_292_166_656
    assert layered.vae.config.input_channels == 4
    assert layered.transformer.config.use_layer3d_rope


def test_budget_skips_work_but_still_reports(tmp_path) -> None:
    code, report = _bench(tmp_path, "--scenario", "sd15_txt2img_512", "--budget-s", "1e-6")
    assert code == 1
    assert report["scenarios"] == {"sd15_txt2img_512": {}}
    assert set(report["errors"]) == {"sd15_txt2img_512:plain", "sd15_txt2img_512:ours"}
    assert all("budget" in message for message in report["errors"].values())


def test_tiny_upscale_scenario_reports_memory(tmp_path) -> None:
    """sd15_upscale_2x_2048 on the tiny model: both sides make the 2x picture (64 -> 128),
    ours in native tiles with the shared noise, the plain one in its own tiles; peak RSS."""
    code, report = _bench(tmp_path, "--scenario", "sd15_upscale_2x_2048")
    assert code == 0 and report["errors"] == {}
    entry = report["scenarios"]["sd15_upscale_2x_2048"]
    assert entry["plain_s"] > 0 and entry["ours_s"] > 0
    assert entry["ours_peak_rss_gb"] > 0 and entry["plain_peak_rss_gb"] > 0
