"""Flux.1 and Z-Image: header detection, the single-file formats users download (bf16, fp8,
GGUF Q8_0; ComfyUI layout with text_encoders/ and vae/), and every mode through the real
Engine with the tiny models (64 px, 2 steps, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engine import families
from backend.engine.detect import detect_checkpoint, kind_from_header
from backend.engine.errors import EngineError
from backend.engine.families import dit_files, flux1, zimage
from backend.engine.families.dit_family import choose_offload, unpack_flux_latents
from backend.engine.families.dit_format import flux_to_diffusers, flux_to_original
from backend.engine.schedulers import make_scheduler

GIB = 1024**3


# -- header fixtures (key names diffusers' single-file loader checks, full-size shapes) -------


def flux_header(variant: str = "dev", prefix: str = "") -> dict[str, tuple[int, ...]]:
    """FLUX.1 as BFL ships it: 19 double and 38 single blocks of 3072 channels, 24 heads."""
    keys: dict[str, tuple[int, ...]] = {
        "img_in.weight": (3072, 384 if variant == "fill" else 64),
        "img_in.bias": (3072,),
        "txt_in.weight": (3072, 4096),
        "vector_in.in_layer.weight": (3072, 768),
        "time_in.in_layer.weight": (3072, 256),
        "final_layer.linear.weight": (64, 3072),
        "final_layer.adaLN_modulation.1.weight": (6144, 3072),
    }
    if variant != "schnell":
        keys["guidance_in.in_layer.weight"] = (3072, 256)
        keys["guidance_in.in_layer.bias"] = (3072,)
    for index in range(19):
        keys[f"double_blocks.{index}.img_attn.norm.key_norm.scale"] = (128,)
        keys[f"double_blocks.{index}.img_attn.qkv.weight"] = (9216, 3072)
    for index in range(38):
        keys[f"single_blocks.{index}.linear1.weight"] = (21504, 3072)
    return {prefix + key: shape for key, shape in keys.items()}


def zimage_header(prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Z-Image Turbo: 30 layers of 3840 channels, 30 heads of 128, 2 refiner layers."""
    keys: dict[str, tuple[int, ...]] = {
        "x_embedder.weight": (3840, 64),
        "cap_embedder.0.weight": (2560,),
        "cap_embedder.1.weight": (3840, 2560),
    }
    for index in range(30):
        keys[f"layers.{index}.adaLN_modulation.0.weight"] = (15360, 256)
        keys[f"layers.{index}.attention.qkv.weight"] = (11520, 3840)
        keys[f"layers.{index}.attention.q_norm.weight"] = (128,)
    for index in range(2):
        keys[f"noise_refiner.{index}.attention.qkv.weight"] = (11520, 3840)
    return {prefix + key: shape for key, shape in keys.items()}


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
@pytest.mark.parametrize(
    ("variant", "family", "inpaint"),
    [("dev", "flux1", False), ("schnell", "flux1-schnell", False), ("fill", "flux1", True)],
)
def test_flux_headers_are_told_apart(prefix, variant, family, inpaint) -> None:
    kind = kind_from_header(flux_header(variant, prefix), "model.safetensors")
    assert (kind.family, kind.inpaint) == (family, inpaint)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_zimage_header_is_detected(prefix) -> None:
    kind = kind_from_header(zimage_header(prefix), "z.safetensors")
    assert (kind.family, kind.inpaint) == ("zimage", False)


def test_full_size_configs_are_read_off_the_header() -> None:
    dev = flux1.config_from_header(flux_header("dev", "model.diffusion_model."))
    assert dev == {
        "patch_size": 1,
        "in_channels": 64,
        "out_channels": 64,
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
        "axes_dims_rope": [16, 56, 56],
    }
    assert flux1.config_from_header(flux_header("schnell"))["guidance_embeds"] is False
    assert flux1.config_from_header(flux_header("fill"))["in_channels"] == 384
    z = zimage.config_from_header(zimage_header())
    assert (z["dim"], z["n_layers"], z["n_refiner_layers"], z["n_heads"], z["n_kv_heads"]) == (
        3840,
        30,
        2,
        30,
        30,
    )
    assert (z["cap_feat_dim"], z["in_channels"], z["axes_dims"]) == (2560, 16, [32, 48, 48])


@pytest.mark.parametrize(
    "key",
    [
        "lora_transformer_single_blocks_0_attn_to_q.lora_A.weight",  # kohya-diffusers
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",  # kohya (BFL names)
        "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight",  # diffusers/PEFT
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight",  # ComfyUI / xlabs
    ],
)
def test_flux_loras_are_flux_loras(key) -> None:
    from backend.engine.lora_formats import lora_facts

    facts = lora_facts({key: (4, 3072)}, {}, "x")
    assert (facts.family, facts.problem) == ("flux1", None)
    assert families.fits("flux1", "flux1-schnell") and not families.fits("flux1", "sdxl")


def test_sd_headers_stay_sd() -> None:
    sd = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}
    assert families.checkpoint_family(sd).id == "sd15"


def test_gguf_files_are_detected_from_their_header(tmp_path) -> None:
    flux = dit_files.write_flux_gguf(tmp_path / "flux-Q8_0.gguf", "schnell")
    z = dit_files.write_zimage_gguf(tmp_path / "z-Q8_0.gguf")
    assert detect_checkpoint(flux).family == "flux1-schnell"
    assert detect_checkpoint(z).family == "zimage"


def test_bfl_layout_converts_both_ways_for_any_width() -> None:
    from backend.engine.families.tiny_dit import build_flux_transformer

    model = build_flux_transformer("dev")
    original = flux_to_original(model)
    assert "double_blocks.0.img_attn.qkv.weight" in original
    assert "single_blocks.0.linear1.weight" in original
    back = flux_to_diffusers({"model.diffusion_model." + k: v for k, v in original.items()})
    state = model.state_dict()
    assert set(back) == set(state)
    assert all(torch.equal(back[key], state[key]) for key in state)


# -- policy and samplers -------------------------------------------------------------------


def test_memory_policy_by_free_vram() -> None:
    # a 12B Flux in GGUF Q8 (~12.7 GB transformer, ~23 GB with bf16 T5) on a 16 GB card
    assert choose_offload(23 * GIB, int(12.7 * GIB), 15 * GIB) == "model"
    assert choose_offload(23 * GIB, int(12.7 * GIB), 40 * GIB) == "none"
    assert choose_offload(33 * GIB, int(23.8 * GIB), 15 * GIB) == "sequential"
    assert choose_offload(33 * GIB, int(23.8 * GIB), None) == "none"  # CPU


def test_flow_models_get_flow_matching_samplers() -> None:
    config = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}
    assert type(make_scheduler("euler", config)).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert type(make_scheduler("heun", config)).__name__ == "FlowMatchHeunDiscreteScheduler"
    assert type(make_scheduler("dpmpp_2m_karras", config)).__name__ == (
        "FlowMatchEulerDiscreteScheduler"
    )


def test_packed_flux_latents_unpack_for_previews() -> None:
    latents = torch.arange(2 * 4 * 8 * 64, dtype=torch.float32).reshape(2, 32, 64)
    unpacked = unpack_flux_latents(latents, width=128, height=64)
    assert unpacked.shape == (2, 16, 8, 16)


def test_capabilities_hide_what_distilled_models_lack() -> None:
    schnell = flux1.SCHNELL.capabilities()
    assert (schnell["negative_prompt"], schnell["cfg"]) == (False, False)
    assert schnell["defaults"]["steps"] == 4
    assert flux1.FAMILY.capabilities()["defaults"]["guidance"] == 3.5
    turbo = zimage.FAMILY.capabilities()
    assert (turbo["defaults"]["steps"], turbo["defaults"]["cfg_scale"]) == (8, 1.0)
    assert turbo["live"] is True


# -- the tiny models through the real engine -------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit-models")
    dit_files.write_comfy_layout(root, "flux1")
    dit_files.write_comfy_layout(root, "zimage")
    checkpoints = root / "checkpoints"
    dit_files.write_flux_transformer(checkpoints / "flux-dev.safetensors", "dev")
    dit_files.write_flux_transformer(checkpoints / "flux-fill.safetensors", "fill")
    dit_files.write_flux_transformer(
        checkpoints / "flux-schnell-fp8.safetensors", "schnell", dtype="float8_e4m3fn"
    )
    dit_files.write_flux_gguf(checkpoints / "flux-dev-Q8_0.gguf", "dev")
    dit_files.write_zimage_transformer(checkpoints / "zimage.safetensors", dtype="bfloat16")
    dit_files.write_zimage_gguf(checkpoints / "zimage-Q8_0.gguf")
    dit_files.write_flux_lora(root / "lora" / "flux-lora.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    return Engine(
        EngineConfig(models_dir=str(models_dir), device="cpu", dtype="float32", cache_models=1)
    )


def _rgba(value: int) -> np.ndarray:
    image = np.zeros((64, 64, 4), np.uint8)
    image[..., :3] = value
    image[..., 3] = 255
    return image


def _request(model: str, mode: str, prompt: str = "a red cat", **extra):
    from backend.engine.types import GenerationRequest

    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    values = {
        "mode": mode,
        "width": 64,
        "height": 64,
        "prompt": prompt,
        "model": model,
        "steps": 2,
        "sampler": "euler",
        "cfg_scale": 1.0,
        "seed": 7,
        "strength": 0.75 if mode == "img2img" else 1.0,
        "image": None if mode == "txt2img" else _rgba(200),
        "mask": mask if mode == "inpaint" else None,
    }
    values.update(extra)
    return GenerationRequest(**values)


def test_the_inventory_lists_every_format(engine) -> None:
    found = {(c.name, c.family, c.inpaint) for c in engine.inventory().checkpoints}
    assert {
        ("flux-dev", "flux1", False),
        ("flux-fill", "flux1", True),
        ("flux-schnell-fp8", "flux1-schnell", False),
        ("flux-dev-Q8_0", "flux1", False),
        ("zimage", "zimage", False),
        ("zimage-Q8_0", "zimage", False),
    } <= found


@pytest.mark.parametrize(
    "model", ["flux-dev", "flux-schnell-fp8", "flux-dev-Q8_0", "zimage", "zimage-Q8_0"]
)
def test_txt2img_follows_the_prompt_and_seed(engine, model) -> None:
    first = engine.generate(_request(model, "txt2img"))[0]
    again = engine.generate(_request(model, "txt2img"))[0]
    other = engine.generate(_request(model, "txt2img", prompt="blue mountain forest"))[0]
    assert first.image.shape == (64, 64, 4) and (first.x, first.y) == (0, 0)
    assert np.array_equal(first.image, again.image)  # same seed, same layer
    assert not np.array_equal(first.image, other.image)  # the prompt reaches the model
    assert first.metadata.model == model


@pytest.mark.parametrize("model", ["flux-dev", "zimage-Q8_0"])
def test_img2img_keeps_more_of_the_source_at_low_strength(engine, model) -> None:
    """Two different sources give layers further apart at strength 0.3 than at 1.0 (where the
    source is all noise): a low strength keeps more of the source."""

    def spread(strength: float) -> float:
        dark, light = (
            engine.generate(_request(model, "img2img", strength=strength, image=_rgba(v)))[0]
            for v in (30, 220)
        )
        return float(np.abs(dark.image.astype(int) - light.image.astype(int)).mean())

    assert spread(0.3) > spread(1.0) + 1.0


@pytest.mark.parametrize("model", ["flux-dev", "flux-fill", "zimage"])
def test_inpaint_changes_only_the_selection(engine, model) -> None:
    layer = engine.generate(_request(model, "inpaint"))[0]
    # the layer is trimmed to the selection (16..48) and opaque inside it
    assert (layer.x, layer.y, layer.width, layer.height) == (16, 16, 32, 32)
    assert layer.image[8:24, 8:24, 3].min() == 255
    assert layer.image[..., 3].max() == 255


def test_fill_runs_through_its_own_pipeline(engine) -> None:
    engine.generate(_request("flux-fill", "inpaint"))
    pipes = [type(pipe).__name__ for pipe in engine._pipelines._pipes.values()]
    assert "FluxFillPipeline" in pipes


def test_gguf_matches_the_full_precision_file(engine) -> None:
    progress = []
    full = engine.generate(_request("flux-dev", "txt2img"), progress.append)[0].image.astype(int)
    # step previews from Flux's packed latents, one per step, of the image's aspect
    assert [p.step for p in progress] == [1, 2]
    assert all(p.preview is not None and p.preview.shape[2] == 3 for p in progress)
    quantised = engine.generate(_request("flux-dev-Q8_0", "txt2img"))[0].image.astype(int)
    assert np.abs(full - quantised).mean() < 4.0  # Q8_0 is close to lossless


def test_missing_text_encoder_names_the_file_and_folder(models_dir, tmp_path) -> None:
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "flux-dev.safetensors").symlink_to(
        models_dir / "checkpoints" / "flux-dev.safetensors"
    )
    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "clip_l.safetensors").symlink_to(
        models_dir / "text_encoders" / "tiny_clip_l.safetensors"
    )
    engine = Engine(EngineConfig(models_dir=str(tmp_path), device="cpu", dtype="float32"))
    with pytest.raises(EngineError) as caught:
        engine.generate(_request("flux-dev", "txt2img"))
    message = str(caught.value.message)
    assert "t5xxl_fp16.safetensors" in message and "text_encoders/" in message


def test_diffusers_folders_load_like_files(tmp_path) -> None:
    from backend.engine.loader import load_checkpoint

    folder = dit_files.write_diffusers_folder(tmp_path / "zimage-folder", "zimage")
    loaded = load_checkpoint(str(folder), device="cpu", dtype=torch.float32, name="z")
    assert (loaded.family, type(loaded.pipe).__name__) == ("zimage", "ZImagePipeline")


def test_a_flux_lora_changes_the_picture_only_while_applied(engine) -> None:
    from backend.engine.types import LoraInput

    entry = next(e for e in engine.inventory().loras if e.name == "flux-lora")
    assert (entry.family, entry.problem) == ("flux1", None)
    plain = engine.generate(_request("flux-dev", "txt2img"))[0].image
    styled = engine.generate(_request("flux-dev", "txt2img", loras=[LoraInput("flux-lora", 1.0)]))[
        0
    ].image
    after = engine.generate(_request("flux-dev", "txt2img"))[0].image
    assert np.abs(plain.astype(int) - styled.astype(int)).mean() > 1.0
    assert np.array_equal(plain, after)  # unloaded: the weights are as before


def test_a_flux_lora_works_on_schnell_but_not_on_zimage(engine) -> None:
    from backend.engine.types import LoraInput

    engine.check_request(
        _request("flux-schnell-fp8", "txt2img", loras=[LoraInput("flux-lora", 1.0)])
    )
    with pytest.raises(EngineError) as caught:
        engine.check_request(_request("zimage", "txt2img", loras=[LoraInput("flux-lora", 1.0)]))
    assert "Flux.1" in caught.value.message and "Z-Image" in caught.value.message


def test_the_memory_policy_is_reported(engine) -> None:
    engine.generate(_request("zimage", "txt2img"))
    assert engine.offload == "none"  # the CPU: nothing to offload to


def test_live_painting_with_zimage_turbo(engine, tmp_path) -> None:
    """Live frames on Z-Image: the turbo preset (Euler, CFG 1), a stable seed, and the
    rendering follows a new stroke."""
    from backend.live import LiveSessions
    from backend.live_presets import resolve_sampling

    sessions = LiveSessions(engine, tmp_path / "out", max_sessions=1)
    sampling = resolve_sampling("zimage", [], None, 2, None)

    def frame(image: np.ndarray):
        request = _request(
            "zimage",
            "img2img",
            image=image,
            strength=0.6,
            steps=sampling.steps,
            cfg_scale=sampling.cfg_scale,
            sampler=sampling.sampler,
        )
        future = sessions.submit("doc", request, None)
        while sessions.pending():
            sessions.run_pending()
        return future.result(timeout=0)

    first, again = frame(_rgba(120)), frame(_rgba(120))
    assert first.seed == again.seed and np.array_equal(first.image, again.image)
    stroke = _rgba(120)
    stroke[8:56, 8:56, :3] = (250, 10, 10)
    painted = frame(stroke)
    assert not np.array_equal(painted.image, first.image)
