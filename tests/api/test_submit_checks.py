"""Everything the model files' headers tell is checked at submit (issue 13, kinds 6-8): a
request the model files rule out is a 4xx naming the field, never a 202 and a failed job."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from backend.engine.engine import Engine
from backend.engine.model_manager import ModelManager
from backend.engine.tiny import ensure_tiny_models
from backend.engine.types import EngineConfig
from backend.engine.vae import tiny_vae_file

from .conftest import make_settings
from .harness import job_files, job_params, raw_bgra, rgba_image, serve_app, wait_job

SD15 = {"ss_base_model_version": "sd_v1"}
ATTN2_K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"


def fake(path, shapes, metadata=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(v) for k, v in shapes.items()}, str(path), metadata=metadata)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tiny = tmp_path_factory.mktemp("tiny")
    paths = ensure_tiny_models(tiny)
    root = tmp_path_factory.mktemp("models")
    # ControlNets: a full-size SD1.5 one (same family, other widths) and an SDXL one.
    full = root / "controlnet" / "control_sd15_depth"
    full.mkdir(parents=True)
    config = {"_class_name": "ControlNetModel", "block_out_channels": [320, 640, 1280, 1280]}
    (full / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 768}))
    shutil.copy(paths["tiny-sdxl-controlnet"], root / "controlnet" / "xl_canny.safetensors")
    # Copies of the tiny one whose names tell their type: depth, openpose, and a segmentation
    # ControlNet (a type we have no control for).
    for name in ("tiny_depth", "tiny_openpose", "control_v11p_sd15_seg"):
        shutil.copy(paths["tiny-controlnet"], root / "controlnet" / f"{name}.safetensors")
    # LoRAs: full-size SD1.5 (text width 768), SDXL (two text encoders), LoHa, LoKr.
    fake(root / "lora" / "full-size.safetensors", {f"{ATTN2_K}.lora_down.weight": (4, 768)}, SD15)
    fake(root / "lora" / "xl-style.safetensors", {"lora_te2_x.lora_down.weight": (4, 1280)})
    xl_loha = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.hada_w1_b"
    fake(
        root / "lora" / "xl-loha.safetensors",
        {xl_loha: (4, 80)},
        {"ss_base_model_version": "sdxl_base_v1-0"},
    )
    fake(root / "lora" / "style-lokr.safetensors", {f"{ATTN2_K}.lokr_w1": (4, 4)}, SD15)
    # Files found but unusable: an SD3 checkpoint, one of an unknown architecture, an SD2.1
    # ControlNet, a damaged VAE.
    fake(
        root / "checkpoints" / "sd3-medium.safetensors",
        {"model.diffusion_model.joint_blocks.0.x": (4,)},
    )
    fake(
        root / "checkpoints" / "mystery.safetensors",
        {"blocks.0.attn.weight": (4, 4), "blocks.0.mlp.weight": (4, 4), "head.weight": (2, 4)},
    )
    sd21 = root / "controlnet" / "sd21_canny"
    sd21.mkdir(parents=True)
    (sd21 / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 1024}))
    (root / "vae").mkdir(parents=True, exist_ok=True)
    (root / "vae" / "half.safetensors").write_bytes(b"\x10\x00" * 8)
    # VAEs.
    tiny_vae_file("sd15", root / "vae" / "tiny-vae.safetensors")
    tiny_vae_file("sdxl", root / "vae" / "xl-vae.safetensors")
    engine_config = EngineConfig(models_dir=str(root), tiny_dir=str(tiny), device="cpu")
    engine = Engine(engine_config, ModelManager(engine_config))
    settings = make_settings(tmp_path_factory.mktemp("out"), default_model="tiny")
    with serve_app(settings, engine) as server, server.client(timeout=120) as http:
        http.engine = engine  # type: ignore[attr-defined]
        yield http


CONTROL = {"type": "canny", "image": "control_0"}
CASES = {
    "controlnet of other widths": (
        job_params(
            model="tiny", controls=[{**CONTROL, "type": "depth", "model": "control_sd15_depth"}]
        ),
        422,
        "controls[0].model",
        "does not fit",
    ),
    "controlnet of other family": (
        job_params(model="tiny", controls=[CONTROL, {**CONTROL, "model": "xl_canny"}]),
        422,
        "controls[1].model",
        "ControlNet for SDXL; the model 'tiny' is SD1.5",
    ),
    "controlnet of other type": (
        job_params(model="tiny", controls=[{**CONTROL, "model": "tiny_depth"}]),
        422,
        "controls[0].model",
        "depth ControlNet",
    ),
    "controlnet for another input": (
        job_params(model="tiny", controls=[{**CONTROL, "model": "control_v11p_sd15_seg"}]),
        422,
        "controls[0].model",
        "seg ControlNet",
    ),
    "lora of other text width": (
        job_params(model="tiny", loras=[{"name": "full-size"}]),
        422,
        "loras[0].name",
        "text width 768",
    ),
    "lora of other family": (
        job_params(model="tiny", loras=[{"name": "tiny-lora"}, {"name": "xl-style"}]),
        422,
        "loras[1].name",
        "LoRA for SDXL; the model 'tiny' is SD1.5",
    ),
    "loha in original sdxl layer names": (
        job_params(model="tiny-sdxl", loras=[{"name": "xl-loha"}]),
        422,
        "loras[0].name",
        "LoHa file with the original SDXL layer names",
    ),
    "incomplete lokr": (
        job_params(model="tiny", loras=[{"name": "style-lokr"}]),
        422,
        "loras[0].name",
        "lacks weights a LoKr file has",
    ),
    "sd15 lora on sdxl": (
        job_params(model="tiny-sdxl", loras=[{"name": "tiny-lora"}]),
        422,
        "loras[0].name",
        "LoRA for SD1.5; the model 'tiny-sdxl' is SDXL",
    ),
    "checkpoint of an unknown architecture": (
        job_params(model="mystery"),
        422,
        "model",
        "unknown architecture: its header holds 3 tensors; the most common key prefixes are "
        "blocks.0.* (2), head.* (1)",
    ),
    "checkpoint of a family we do not run": (
        job_params(model="sd3-medium"),
        422,
        "model",
        "Stable Diffusion 3",
    ),
    "controlnet of a family we do not run": (
        job_params(model="tiny", controls=[{**CONTROL, "model": "sd21_canny"}]),
        422,
        "controls[0].model",
        "SD2.x",
    ),
    "damaged vae": (job_params(model="tiny", vae="half"), 422, "vae", "not a readable"),
    "vae of other family": (job_params(model="tiny", vae="xl-vae"), 422, "vae", "SDXL VAE"),
    "unknown vae": (job_params(model="tiny", vae="nope"), 404, "vae", "not installed"),
    "vae path": (job_params(model="tiny", vae="../x"), 422, "vae", "not a path"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_at_submit_naming_the_field(client, name) -> None:
    params, status, field, words = CASES[name]
    parts = {}
    for control in params.get("controls", []):
        parts[control["image"]] = raw_bgra(rgba_image(64, 64))
    response = client.post("/v1/jobs", files=job_files(params, **parts))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and words in error["message"], error
    assert client.get("/v1/health").json()["queue_length"] == 0


def test_models_lists_vaes_lora_formats_and_problems(client) -> None:
    info = client.get("/v1/models").json()
    vaes = {vae["name"]: vae for vae in info["vaes"]}
    assert vaes["tiny-vae"] == {"name": "tiny-vae", "family": "sd15", "problem": None}
    assert vaes["xl-vae"]["family"] == "sdxl"
    loras = {lora["name"]: lora for lora in info["loras"]}
    assert loras["tiny-lora"]["format"] == "lora" and loras["tiny-lora"]["problem"] is None
    assert loras["style-lokr"]["format"] == "lokr" and "damaged" in loras["style-lokr"]["problem"]
    assert (
        loras["xl-loha"]["format"] == "loha" and "SDXL layer names" in loras["xl-loha"]["problem"]
    )
    assert loras["xl-style"]["family"] == "sdxl"
    assert all(c["has_vae"] for c in info["checkpoints"])


def test_models_lists_unusable_files_with_the_reason_and_capabilities(client) -> None:
    info = client.get("/v1/models").json()
    unusable = {(u["kind"], u["name"]): u["problem"] for u in info["unusable"]}
    assert "Stable Diffusion 3" in unusable[("checkpoints", "sd3-medium")]
    assert "blocks.0.* (2)" in unusable[("checkpoints", "mystery")]
    assert "mystery" not in {c["name"] for c in info["checkpoints"]}
    checkpoints = {c["name"]: c for c in info["checkpoints"]}
    tiny, xl = checkpoints["tiny"]["capabilities"], checkpoints["tiny-sdxl"]["capabilities"]
    assert tiny["modes"][:4] == ["txt2img", "img2img", "inpaint", "outpaint"]
    assert tiny["negative_prompt"] is True and tiny["cfg"] is True
    assert (tiny["native_size"], tiny["size_multiple"]) == (512, 8)
    assert (xl["native_size"], xl["size_multiple"]) == (1024, 64)
    assert tiny["defaults"] == {
        "sampler": "dpmpp_2m_karras",
        "steps": 20,
        "cfg_scale": 7.0,
        "guidance": None,
    }


def test_a_fitting_vae_and_controlnet_run(client) -> None:
    params = job_params(model="tiny", vae="tiny-vae", controls=[CONTROL], seed=1)
    response = client.post(
        "/v1/jobs", files=job_files(params, control_0=raw_bgra(rgba_image(64, 64)))
    )
    assert response.status_code == 202, response.text
    info = wait_job(client, response.json()["id"], timeout=120)
    assert info["state"] == "done", info


def test_a_pose_control_picks_the_openpose_controlnet(client) -> None:
    """The protocol's "pose" finds ControlNets named "openpose"; a segmentation ControlNet is
    never picked for another type."""
    models = client.engine.models
    models.checkpoint("tiny")
    assert models.resolve_controlnet("sd15", "pose").name == "tiny_openpose"
    assert models.resolve_controlnet("sd15", "depth").name == "tiny_depth"
    picked = {
        models.resolve_controlnet("sd15", kind).name for kind in ("canny", "scribble", "tile")
    }
    assert "control_v11p_sd15_seg" not in picked
