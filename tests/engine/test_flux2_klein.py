"""FLUX.2 klein: header detection (full-size key names and shapes of klein 4B and 9B, with and
without ComfyUI's prefix, GGUF), the tiny set written as users keep the files (ComfyUI layout:
checkpoints/, text_encoders/, vae/) and loaded through the real inventory and loader, every
mode through the real Engine on the CPU (64 px, 2 steps), reference editing, LoRAs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engine import families
from backend.engine.detect import detect_checkpoint, kind_from_header
from backend.engine.errors import EngineError
from backend.engine.families import dit_files, flux2_edit, flux2_klein, flux2_pipes, tiny_flux2
from backend.engine.lora_formats import lora_facts

# -- header fixtures (the keys diffusers' single-file loader checks, full-size shapes) --------


def klein_header(size: str = "4b", prefix: str = "") -> dict[str, tuple[int, ...]]:
    """klein 4B: 5 double and 20 single blocks of 3072 channels (24 heads of 128), Qwen3-4B
    (3 x 2560); 9B: 8 and 24 blocks of 4096 channels (32 heads), Qwen3-8B (3 x 4096)."""
    inner, double, single, text = {"4b": (3072, 5, 20, 7680), "9b": (4096, 8, 24, 12288)}[size]
    keys: dict[str, tuple[int, ...]] = {
        "img_in.weight": (inner, 128),
        "txt_in.weight": (inner, text),
        "time_in.in_layer.weight": (inner, 256),
        "time_in.out_layer.weight": (inner, inner),
        "double_stream_modulation_img.lin.weight": (6 * inner, inner),
        "double_stream_modulation_txt.lin.weight": (6 * inner, inner),
        "single_stream_modulation.lin.weight": (3 * inner, inner),
        "final_layer.linear.weight": (128, inner),
        "final_layer.adaLN_modulation.1.weight": (2 * inner, inner),
    }
    for index in range(double):
        keys[f"double_blocks.{index}.img_attn.qkv.weight"] = (3 * inner, inner)
        keys[f"double_blocks.{index}.img_attn.norm.key_norm.scale"] = (128,)
        keys[f"double_blocks.{index}.img_mlp.0.weight"] = (6 * inner, inner)
    for index in range(single):
        keys[f"single_blocks.{index}.linear1.weight"] = (9 * inner, inner)
        keys[f"single_blocks.{index}.linear2.weight"] = (inner, 4 * inner)
    return {prefix + key: shape for key, shape in keys.items()}


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
@pytest.mark.parametrize("size", ["4b", "9b"])
def test_klein_headers_are_klein(size, prefix) -> None:
    kind = kind_from_header(klein_header(size, prefix), "model.safetensors")
    assert (kind.family, kind.inpaint) == ("flux2_klein", False)


def test_flux2_dev_and_other_families_are_not_klein() -> None:
    dev = klein_header("4b")
    dev["guidance_in.in_layer.weight"] = (3072, 256)  # FLUX.2 dev: guidance embedding
    assert not flux2_klein.is_klein(dev)
    from tests.engine.test_flux_zimage import flux_header, zimage_header

    for header in (flux_header("dev"), flux_header("schnell"), zimage_header()):
        assert not flux2_klein.FAMILY.matches_checkpoint(header)
    assert kind_from_header(flux_header("schnell"), "s.safetensors").family == "flux1-schnell"


def test_full_size_configs_are_read_off_the_header() -> None:
    four = flux2_klein.config_from_header(klein_header("4b", "model.diffusion_model."))
    assert (four["num_layers"], four["num_single_layers"], four["num_attention_heads"]) == (
        5,
        20,
        24,
    )
    assert (four["joint_attention_dim"], four["mlp_ratio"], four["axes_dims_rope"]) == (
        7680,
        3.0,
        [32, 32, 32, 32],
    )
    assert four["guidance_embeds"] is False
    nine = flux2_klein.config_from_header(klein_header("9b"))
    assert (nine["num_attention_heads"], nine["joint_attention_dim"]) == (32, 12288)


@pytest.mark.parametrize(("size", "billions"), [("4b", 3.88), ("9b", 9.08)])
def test_header_configs_build_the_model_the_file_holds(size, billions) -> None:
    """The config read off a full-size header builds (on the meta device) a transformer of the
    model's size whose shapes take every tensor diffusers' converter makes of the header."""
    from accelerate import init_empty_weights
    from diffusers import Flux2Transformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_flux2_transformer_checkpoint_to_diffusers,
    )

    header = klein_header(size, "model.diffusion_model.")
    with init_empty_weights():
        model = Flux2Transformer2DModel(**flux2_klein.config_from_header(header))
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == billions
    state = {k: torch.empty(v, device="meta") for k, v in header.items()}
    state = {k[len(tiny_flux2.PREFIX) :]: v for k, v in state.items()}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, value in convert_flux2_transformer_checkpoint_to_diffusers(state).items():
        assert shapes.get(key) == tuple(value.shape), key


def test_the_gguf_set_is_detected_from_its_header(tmp_path) -> None:
    assert tiny_flux2.write_tiny_flux2_klein(tmp_path, gguf=True) == "tiny_flux2_klein"
    path = tmp_path / "checkpoints" / "tiny_flux2_klein.gguf"
    assert detect_checkpoint(path).family == "flux2_klein"


@pytest.mark.parametrize(
    "keys",
    [
        {  # ai-toolkit / BFL names (shared with FLUX.1): klein 4B's linear1 width tells
            "diffusion_model.single_blocks.0.linear1.lora_A.weight": (16, 3072),
            "diffusion_model.single_blocks.0.linear1.lora_B.weight": (27648, 16),
        },
        {  # kohya, klein 9B's double-block MLP input
            "lora_unet_double_blocks_0_img_mlp_0.lora_down.weight": (16, 4096),
            "lora_unet_double_blocks_0_img_mlp_0.lora_up.weight": (24576, 16),
            "lora_unet_double_blocks_0_img_mlp_0.alpha": (),
        },
        {  # diffusers/PEFT: FLUX.2-only module names
            "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj.lora_A.weight": (
                16,
                3072,
            ),
            "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj.lora_B.weight": (
                27648,
                16,
            ),
        },
    ],
)
def test_klein_loras_are_klein_loras(keys) -> None:
    facts = lora_facts(keys, {}, "x")
    assert (facts.family, facts.problem) == ("flux2_klein", None)


def test_flux1_loras_stay_flux1() -> None:
    keys = {
        "diffusion_model.single_blocks.0.linear1.lora_A.weight": (16, 3072),
        "diffusion_model.single_blocks.0.linear1.lora_B.weight": (21504, 16),
    }
    facts = lora_facts(keys, {}, "x")
    assert facts.family == "flux1"


def test_packed_latents_unpack_for_previews() -> None:
    from backend.engine.previews import latents_to_preview

    packed = torch.randn(1, 16, 128)  # 64x64 px: 4x4 tokens of 2x2x32
    latents = flux2_pipes.unpack_latents(packed, 64, 64, 8)
    assert latents.shape == (1, 32, 8, 8)
    # token (row 1, col 2), patch position (0, 1), channel 5 -> pixel (2, 5) of channel 5
    assert latents[0, 5, 2, 5] == packed[0, 1 * 4 + 2, 5 * 4 + 1]
    assert latents_to_preview(latents, "flux2_klein").shape[2] == 3


def test_capabilities_say_distilled_and_edit() -> None:
    caps = flux2_klein.FAMILY.capabilities()
    assert (caps["defaults"]["steps"], caps["cfg"], caps["negative_prompt"]) == (4, False, False)
    assert caps["edit"] == {"max_references": 3, "live": True}
    assert "edit" in caps["modes"] and caps["live"] is True


# -- the tiny set through the real engine ------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("klein-models")
    assert tiny_flux2.write_tiny_flux2_klein(root) == "tiny_flux2_klein"
    state = tiny_flux2.transformer_to_original(tiny_flux2.build_transformer())
    config = dict(tiny_flux2.transformer_config(), _dl_native_size=64)
    dit_files.write_gguf(state, root / "checkpoints" / "klein-Q8_0.gguf", config)
    fp8 = {tiny_flux2.PREFIX + k: v.to(torch.float8_e4m3fn) for k, v in state.items()}
    metadata = {dit_files.CONFIG_KEY: __import__("json").dumps(config)}
    dit_files._save(fp8, metadata, root / "checkpoints" / "klein-fp8.safetensors")
    tiny_flux2.write_tiny_lora(root / "lora" / "klein-lora.safetensors")
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


def _request(mode: str, model: str = "tiny_flux2_klein", prompt: str = "a red cat", **extra):
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


def test_the_inventory_lists_the_tiny_set(engine) -> None:
    found = {(c.name, c.family) for c in engine.inventory().checkpoints}
    assert {(n, "flux2_klein") for n in ("tiny_flux2_klein", "klein-Q8_0", "klein-fp8")} <= found
    entry = next(e for e in engine.inventory().loras if e.name == "klein-lora")
    assert (entry.family, entry.problem) == ("flux2_klein", None)


@pytest.mark.parametrize("model", ["tiny_flux2_klein", "klein-Q8_0", "klein-fp8"])
def test_txt2img_follows_the_prompt_and_seed_with_previews(engine, model) -> None:
    progress = []
    first = engine.generate(_request("txt2img", model), progress.append)[0]
    again = engine.generate(_request("txt2img", model))[0]
    other = engine.generate(_request("txt2img", model, prompt="blue mountain forest"))[0]
    assert first.image.shape == (64, 64, 4)
    assert np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)
    assert [p.step for p in progress] == [1, 2]
    assert all(p.preview is not None and p.preview.shape[2] == 3 for p in progress)


def test_img2img_keeps_more_of_the_source_at_low_strength(engine) -> None:
    """Two sources give layers further apart the lower the strength; at 1.0 the source is all
    noise (klein's img2img does not also condition on the source) and they are equal."""

    def spread(strength: float) -> float:
        dark, light = (
            engine.generate(_request("img2img", strength=strength, image=_rgba(v)))[0]
            for v in (30, 220)
        )
        return float(np.abs(dark.image.astype(int) - light.image.astype(int)).mean())

    low, mid, full = spread(0.1), spread(0.6), spread(1.0)
    assert low > mid + 1.0 and mid > full and full == 0.0


def test_inpaint_changes_only_the_selection(engine) -> None:
    layer = engine.generate(_request("inpaint"))[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (16, 16, 32, 32)
    assert layer.image[8:24, 8:24, 3].min() == 255


def test_a_lora_changes_the_picture_and_weight_zero_does_not(engine) -> None:
    from backend.engine.types import LoraInput

    plain = engine.generate(_request("txt2img"))[0].image.astype(int)
    styled = engine.generate(_request("txt2img", loras=[LoraInput("klein-lora", 1.0)]))[0]
    zero = engine.generate(_request("txt2img", loras=[LoraInput("klein-lora", 0.0)]))[0]
    after = engine.generate(_request("txt2img"))[0].image.astype(int)
    assert np.abs(plain - styled.image.astype(int)).mean() > 1.0
    assert np.abs(plain - zero.image.astype(int)).max() <= 1
    assert np.array_equal(plain, after)


def _edit_call(references, mask=None, seeds=(3,), steps=2):
    from backend.engine.types import EditCall

    rng = np.random.default_rng(0)
    steps_seen: list[tuple[int, int]] = []
    call = EditCall(
        prompt="make it red",
        negative_prompt="",
        image=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
        references=references,
        mask=mask,
        width=64,
        height=64,
        steps=steps,
        cfg_scale=1.0,
        guidance=None,
        seeds=list(seeds),
        strength=1.0,
        on_step=lambda step, total, latents: steps_seen.append((step, total)),
    )
    return call, steps_seen


@pytest.fixture(scope="module")
def pipe(models_dir):
    from backend.engine.loader import load_checkpoint

    path = models_dir / "checkpoints" / "tiny_flux2_klein.safetensors"
    loaded = load_checkpoint(
        str(path), device="cpu", dtype=torch.float32, name="k", models_dir=str(models_dir)
    )
    return loaded.pipe


def test_edit_with_a_reference_differs_from_edit_without(pipe) -> None:
    reference = np.zeros((48, 80, 3), np.uint8)
    reference[..., 0] = 255  # any size: the family fits it
    plain, steps = _edit_call([])
    with_ref, _ = _edit_call([reference])
    first = flux2_klein.FAMILY.edit.run(pipe, plain)
    again = flux2_klein.FAMILY.edit.run(pipe, plain)
    other = flux2_klein.FAMILY.edit.run(pipe, with_ref)
    assert first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
    assert np.array_equal(first[0], again[0])
    assert np.abs(first[0].astype(int) - other[0].astype(int)).mean() > 0.5
    assert steps == [(1, 2), (2, 2)] * 2  # every step of both runs of ``plain``


def test_masked_edit_runs_the_inpaint_pipeline_with_references(pipe) -> None:
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    call, steps = _edit_call([np.full((64, 64, 3), 30, np.uint8)] * 2, mask=mask, seeds=(1, 2))
    results = flux2_klein.FAMILY.edit.run(pipe, call)
    assert len(results) == 2 and not np.array_equal(results[0], results[1])
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_edit_refuses_too_many_references(pipe) -> None:
    call, _ = _edit_call([np.zeros((64, 64, 3), np.uint8)] * 4)
    with pytest.raises(ValueError, match="at most 3"):
        flux2_edit.run(pipe, call)


def test_missing_text_encoder_names_the_file_and_folder(models_dir, tmp_path) -> None:
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "k.safetensors").symlink_to(
        models_dir / "checkpoints" / "tiny_flux2_klein.safetensors"
    )
    engine = Engine(EngineConfig(models_dir=str(tmp_path), device="cpu", dtype="float32"))
    with pytest.raises(EngineError) as caught:
        engine.generate(_request("txt2img", model="k"))
    message = str(caught.value.message)
    assert "qwen_3_4b.safetensors" in message and "text_encoders/" in message


def test_missing_vae_names_the_file_and_folder(models_dir, tmp_path) -> None:
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    for folder, name in (
        ("checkpoints", "tiny_flux2_klein"),
        ("text_encoders", "tiny_qwen3_klein"),
    ):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.safetensors").symlink_to(
            models_dir / folder / f"{name}.safetensors"
        )
    engine = Engine(EngineConfig(models_dir=str(tmp_path), device="cpu", dtype="float32"))
    with pytest.raises(EngineError) as caught:
        engine.generate(_request("txt2img"))
    message = str(caught.value.message)
    assert "flux2-vae.safetensors" in message and "vae/" in message


def test_diffusers_folders_keep_is_distilled(tmp_path) -> None:
    from backend.engine.loader import load_checkpoint

    tiny_flux2.build_pipeline(distilled=False).save_pretrained(str(tmp_path / "klein-base"))
    loaded = load_checkpoint(str(tmp_path / "klein-base"), device="cpu", dtype=torch.float32)
    assert loaded.family == "flux2_klein" and loaded.pipe.config.is_distilled is False
    embeds = flux2_klein.encode(loaded.pipe, "a cat", "blurry").pipeline_kwargs()
    assert set(embeds) == {"prompt_embeds", "negative_prompt_embeds"}  # the base model has CFG


def test_the_registry_lists_klein_before_flux1() -> None:
    ids = families.ids()
    assert ids.index("flux2_klein") < ids.index("flux1-schnell")


def test_edit_through_the_engine_follows_a_reference(engine) -> None:
    from backend.engine.types import ControlInput

    reference = np.zeros((64, 64, 4), np.uint8)
    reference[..., 2] = 255
    reference[..., 3] = 255  # a blue layer
    progress = []
    plain = engine.generate(_request("edit", prompt="make it red"), progress.append)[0]
    referenced = engine.generate(
        _request("edit", prompt="make it red", controls=[ControlInput("reference", reference)])
    )[0]
    assert plain.image.shape == (64, 64, 4) and (plain.image[..., 3] == 255).all()
    assert plain.metadata.mode == "edit"
    assert np.abs(plain.image.astype(int) - referenced.image.astype(int)).mean() > 0.5
    assert [p.step for p in progress] == [1, 2]
    assert all(p.preview is not None for p in progress)  # unpacked 32-channel latents


def test_edit_of_a_selection_is_placed_at_it(engine) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    (layer,) = engine.generate(_request("edit", prompt="make it red", mask=mask))
    assert (layer.x, layer.y, layer.width, layer.height) == (16, 16, 32, 32)


def test_both_vae_layouts_load_to_the_same_weights(tmp_path) -> None:
    from backend.engine.families import flux2_load

    vae = tiny_flux2.build_vae(seed=3)
    config = {dit_files.CONFIG_KEY: __import__("json").dumps(tiny_flux2.vae_config())}
    original = dit_files._save(
        tiny_flux2.vae_to_original(vae), config, tmp_path / "vae" / "a.safetensors"
    )
    diffusers_layout = dit_files._save(dict(vae.state_dict()), config, tmp_path / "b.safetensors")
    assert flux2_load.find_vae(tmp_path) == original  # found by its 32 latent channels
    for path in (original, diffusers_layout):
        loaded = flux2_load.load_vae(path, torch.float32)
        for key, value in vae.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (path.name, key)


def test_live_painting_follows_a_stroke(engine, tmp_path) -> None:
    """Live frames (img2img at klein's defaults): a stable seed, and a new stroke shows."""
    from backend.live import LiveSessions

    sessions = LiveSessions(engine, tmp_path / "out", max_sessions=1)
    defaults = flux2_klein.FAMILY.defaults

    def frame(image: np.ndarray):
        request = _request(
            "img2img", image=image, strength=0.6, steps=2, cfg_scale=defaults.cfg_scale
        )
        future = sessions.submit("doc", request, None)
        while sessions.pending():
            sessions.run_pending()
        return future.result(timeout=0)

    first, again = frame(_rgba(120)), frame(_rgba(120))
    assert first.seed == again.seed and np.array_equal(first.image, again.image)
    stroke = _rgba(120)
    stroke[8:56, 8:56, :3] = (250, 10, 10)
    assert not np.array_equal(frame(stroke).image, first.image)
