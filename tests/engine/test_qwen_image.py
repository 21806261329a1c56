"""Qwen-Image, -Edit, -Edit-Plus and -Layered: detection (header keys, transformer configs,
safetensors metadata), the tiny sets written as users keep the real files and loaded offline
through the real loaders, every mode on the CPU (64 px, 2 steps), edit with references,
decomposition into RGBA layers, LoRAs (docs/engine.md "Qwen-Image")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engine import families
from backend.engine.detect import detect_checkpoint
from backend.engine.errors import ModelLoadError
from backend.engine.families import qwen_image, qwen_run, tiny_qwen, tiny_qwen_control
from backend.engine.types import DecomposeCall, EditCall


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen-models")
    for variant in tiny_qwen.VARIANTS:
        tiny_qwen.write_tiny_qwen_image(root, variant)
    tiny_qwen_control.write_lora(root / "lora" / "qwen-lora.safetensors")
    tiny_qwen_control.write_lora(root / "lora" / "qwen-lora-kohya.safetensors", kohya=True)
    # the base transformer again as GGUF Q8_0 (ComfyUI-GGUF's layout, no metadata but ours)
    from backend.engine.families import dit_files

    config = dict(tiny_qwen.transformer_config("base"), _dl_native_size=64)
    state = dict(tiny_qwen.build_transformer("base").state_dict())
    dit_files.write_gguf(state, root / "checkpoints" / "tiny_qwen_image_base-Q8_0.gguf", config)
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    return Engine(
        EngineConfig(models_dir=str(models_dir), device="cpu", dtype="float32", cache_models=1)
    )


_PIPES: dict[str, object] = {}


def _pipe(models_dir, variant: str, family: families.Family):
    """The tiny ``variant`` loaded through the family's load hook (kept for the module)."""
    if variant not in _PIPES:
        path = models_dir / "checkpoints" / f"tiny_qwen_image_{variant}.safetensors"
        loaded = family.load(
            str(path), device="cpu", dtype=torch.float32, models_dir=str(models_dir)
        )
        _PIPES[variant] = loaded.pipe
    return _PIPES[variant]


def _image(seed: int = 0, flip: bool = False) -> np.ndarray:
    picture = (np.random.RandomState(seed).rand(64, 64, 3) * 255).astype(np.uint8)
    picture[16:48, 16:48] = (220, 40, 40)  # a red square: something to edit or separate
    return picture[::-1].copy() if flip else picture


def _edit_call(**extra) -> EditCall:
    values = {
        "prompt": "make the square blue",
        "negative_prompt": "",
        "image": _image(),
        "references": [],
        "mask": None,
        "width": 64,
        "height": 64,
        "steps": 2,
        "cfg_scale": 1.0,
        "guidance": None,
        "seeds": [3],
        "strength": 1.0,
        "on_step": lambda step, total, latents: None,
    }
    values.update(extra)
    return EditCall(**values)


# -- detection ---------------------------------------------------------------------------------


def test_tiny_files_are_detected_from_their_headers(models_dir) -> None:
    found = {
        variant: detect_checkpoint(
            models_dir / "checkpoints" / f"tiny_qwen_image_{variant}.safetensors"
        ).family
        for variant in tiny_qwen.VARIANTS
    }
    # Layered has its own tensor; base, Edit and Edit-Plus hold the same tensors and are told
    # apart by the files' modelspec.architecture metadata (Family.from_metadata)
    assert found == {
        "base": "qwen_image",
        "edit": "qwen_image_edit",
        "edit_plus": "qwen_image_edit_plus",
        "layered": "qwen_image_layered",
    }


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"modelspec.architecture": "qwen-image"}, "qwen_image"),
        ({"modelspec.architecture": "qwen-image-edit"}, "qwen_image_edit"),
        ({"modelspec.architecture": "qwen-image-edit-plus"}, "qwen_image_edit_plus"),
        ({"modelspec.title": "Qwen-Image-Edit-2509"}, "qwen_image_edit_plus"),
        ({"modelspec.architecture": "qwen-image-layered"}, "qwen_image_layered"),
        ({"modelspec.architecture": "flux-1-dev"}, None),
        ({}, None),
    ],
)
def test_metadata_names_the_variant(metadata, family) -> None:
    assert qwen_image.family_from_metadata(metadata) == family


def test_diffusers_configs_name_the_variant() -> None:
    base = {"_class_name": "QwenImageTransformer2DModel"}
    assert qwen_image.family_from_config(base) == "qwen_image"
    assert qwen_image.family_from_config({**base, "zero_cond_t": True}) == "qwen_image_edit_plus"
    layered = {**base, "use_additional_t_cond": True, "use_layer3d_rope": True}
    assert qwen_image.family_from_config(layered) == "qwen_image_layered"
    assert qwen_image.family_from_config(base, "QwenImageEditPipeline") == "qwen_image_edit"
    transformer_families = [f for f in families.FAMILIES if f.load is not None]
    found = [f.id for f in transformer_families if f.matches_unet_config(layered)]
    assert found == ["qwen_image_layered"]  # as detect.py asks for a diffusers folder
    assert [f.id for f in transformer_families if f.matches_unet_config(base)] == ["qwen_image"]


def test_qwen_image_21_and_flux_headers_are_not_qwen_image() -> None:
    keys = {
        "transformer_blocks.0.img_mod.1.weight": (18432, 3072),
        "txt_norm.weight": (3584,),
        "img_in.weight": (3072, 64),
    }
    assert qwen_image.is_qwen_image(keys)
    assert not qwen_image.is_qwen_image({**keys, "txt_in.text_norm.weight": (3584,)})
    assert not qwen_image.is_qwen_image({"double_blocks.0.img_attn.norm.key_norm.scale": (128,)})


def test_the_families_share_loras_and_declare_their_abilities() -> None:
    edit_plus = families.get("qwen_image_edit_plus").capabilities()
    assert edit_plus["edit"] == {"max_references": qwen_image.EDIT_PLUS_REFERENCES, "live": False}
    assert families.get("qwen_image_edit").capabilities()["edit"]["max_references"] == 0
    assert families.get("qwen_image_layered").modes() == ("layers",)
    assert families.get("qwen_image_layered").capabilities()["layers"] == {
        "min": 2,
        "max": 8,
        "default": 4,
    }
    assert families.get("qwen_image").capabilities()["edit"] is None
    for other in ("qwen_image_edit", "qwen_image_edit_plus", "qwen_image_layered"):
        assert families.fits("qwen_image", other)
    defaults = families.get("qwen_image").defaults
    assert (defaults.steps, defaults.cfg_scale) == (50, 4.0)


# -- loading -------------------------------------------------------------------------------------


def test_a_missing_text_encoder_names_the_file_and_folder(models_dir, tmp_path) -> None:
    checkpoint = tmp_path / "checkpoints" / "q.safetensors"
    tiny_qwen.write_transformer(checkpoint, "base")
    tiny_qwen.write_vae(tmp_path / "vae" / "v.safetensors")
    with pytest.raises(ModelLoadError) as caught:
        qwen_image.FAMILY.load(
            str(checkpoint), device="cpu", dtype=torch.float32, models_dir=str(tmp_path)
        )
    message = caught.value.message
    assert "qwen_2.5_vl_7b" in message and "text_encoders/" in message


def test_layered_needs_the_rgba_vae(models_dir, tmp_path) -> None:
    checkpoint = tmp_path / "checkpoints" / "l.safetensors"
    tiny_qwen.write_transformer(checkpoint, "layered")
    tiny_qwen.write_text_encoder(tmp_path / "text_encoders" / "t.safetensors")
    tiny_qwen.write_vae(tmp_path / "vae" / "rgb.safetensors")  # the RGB one only
    with pytest.raises(ModelLoadError) as caught:
        qwen_image.LAYERED.load(
            str(checkpoint), device="cpu", dtype=torch.float32, models_dir=str(tmp_path)
        )
    assert "qwen_image_layered_vae.safetensors" in caught.value.message


# -- generation through the real engine --------------------------------------------------------


def _request(mode: str, **extra):
    from backend.engine.types import GenerationRequest

    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    rgba = np.dstack([_image(), np.full((64, 64), 255, np.uint8)])
    values = {
        "mode": mode,
        "width": 64,
        "height": 64,
        "prompt": "a red square",
        "model": "tiny_qwen_image_base",
        "steps": 2,
        "sampler": "euler",
        "cfg_scale": 1.0,
        "seed": 7,
        "strength": 0.75 if mode == "img2img" else 1.0,
        "image": None if mode == "txt2img" else rgba,
        "mask": mask if mode == "inpaint" else None,
    }
    values.update(extra)
    return GenerationRequest(**values)


def test_the_inventory_lists_the_tiny_set(engine) -> None:
    found = {(c.name, c.family) for c in engine.inventory().checkpoints}
    assert ("tiny_qwen_image_base", "qwen_image") in found
    assert ("tiny_qwen_image_layered", "qwen_image_layered") in found


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_every_task_runs_and_follows_the_prompt(engine, mode) -> None:
    first = engine.generate(_request(mode))[0]
    other = engine.generate(_request(mode, prompt="blue mountain forest"))[0]
    assert first.image.shape[2] == 4
    assert not np.array_equal(first.image, other.image)  # the prompt reaches the model
    if mode == "inpaint":
        assert (first.x, first.y, first.width, first.height) == (16, 16, 32, 32)


def test_lora_weight_zero_changes_nothing_and_one_changes_the_picture(engine) -> None:
    from backend.engine.types import LoraInput

    entry = next(e for e in engine.inventory().loras if e.name == "qwen-lora")
    assert (entry.family, entry.problem) == ("qwen_image", None)
    plain = engine.generate(_request("txt2img"))[0].image
    zero = engine.generate(_request("txt2img", loras=[LoraInput("qwen-lora", 0.0)]))[0].image
    styled = engine.generate(_request("txt2img", loras=[LoraInput("qwen-lora", 1.0)]))[0].image
    assert np.array_equal(plain, zero)
    assert np.abs(plain.astype(int) - styled.astype(int)).mean() > 1.0
    # the same LoRA in kohya's layout (diffusers converts it) gives the same picture
    kohya = engine.generate(_request("txt2img", loras=[LoraInput("qwen-lora-kohya", 1.0)]))[0]
    assert np.abs(kohya.image.astype(int) - styled.astype(int)).max() <= 1


# -- edit -----------------------------------------------------------------------------------


def test_edit_runs_every_step_and_follows_the_instruction(models_dir) -> None:
    pipe = _pipe(models_dir, "edit", qwen_image.EDIT)
    steps: list[tuple[int, int, tuple]] = []

    def on_step(step: int, total: int, latents) -> None:
        steps.append((step, total, tuple(latents.shape)))

    first = qwen_image.EDIT.edit.run(pipe, _edit_call(on_step=on_step))
    other = qwen_image.EDIT.edit.run(pipe, _edit_call(prompt="turn it into a forest"))
    # every step, with latents unpacked for previews: (B, 16, h/8, w/8)
    assert steps == [(1, 2, (1, 16, 8, 8)), (2, 2, (1, 16, 8, 8))]
    assert len(first) == 1 and first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
    assert not np.array_equal(first[0], other[0])


def test_edit_depends_on_the_input_image(models_dir) -> None:
    pipe = _pipe(models_dir, "edit", qwen_image.EDIT)
    one = qwen_image.EDIT.edit.run(pipe, _edit_call())[0]
    two = qwen_image.EDIT.edit.run(pipe, _edit_call(image=_image(1)))[0]
    assert np.abs(one.astype(int) - two.astype(int)).mean() > 0.3


def test_a_masked_edit_runs_through_the_edit_inpaint_pipeline(models_dir) -> None:
    pipe = _pipe(models_dir, "edit", qwen_image.EDIT)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    out = qwen_image.EDIT.edit.run(pipe, _edit_call(mask=mask, seeds=[3, 4]))
    assert [o.shape for o in out] == [(64, 64, 3), (64, 64, 3)]
    assert not np.array_equal(out[0], out[1])  # one picture per seed


def test_a_reference_image_changes_the_edit(models_dir) -> None:
    pipe = _pipe(models_dir, "edit_plus", qwen_image.EDIT_PLUS)
    plain = qwen_image.EDIT_PLUS.edit.run(pipe, _edit_call())[0]
    again = qwen_image.EDIT_PLUS.edit.run(pipe, _edit_call())[0]
    referenced = qwen_image.EDIT_PLUS.edit.run(pipe, _edit_call(references=[_image(2, True)]))[0]
    assert np.array_equal(plain, again)  # same seed, same picture
    assert np.abs(plain.astype(int) - referenced.astype(int)).mean() > 0.3


# -- decompose ------------------------------------------------------------------------------


def _alpha_composite(layers: list[np.ndarray]) -> np.ndarray:
    """Straight-alpha "over" of ``layers`` (bottom first) onto black: (H, W, 3) float 0..255."""
    out = np.zeros(layers[0].shape[:2] + (3,))
    for layer in layers:
        alpha = layer[..., 3:].astype(float) / 255.0
        out = layer[..., :3].astype(float) * alpha + out * (1.0 - alpha)
    return out


@pytest.mark.parametrize("count", [2, 3])
def test_decompose_returns_rgba_layers_and_the_pipelines_composite(models_dir, count) -> None:
    pipe = _pipe(models_dir, "layered", qwen_image.LAYERED)
    steps: list[tuple[int, tuple]] = []
    call = DecomposeCall(
        prompt="a red square",
        negative_prompt="",
        image=_image(),
        layers=count,
        width=64,
        height=64,
        steps=2,
        cfg_scale=1.0,
        seed=5,
        on_step=lambda step, total, latents: steps.append((step, tuple(latents.shape))),
    )
    result = qwen_image.LAYERED.decompose.run(pipe, call)
    # every step, with frame 0 (the composite being made) unpacked for previews
    assert steps == [(1, (1, 16, 8, 8)), (2, (1, 16, 8, 8))]
    assert len(result.layers) == count
    assert all(layer.shape == (64, 64, 4) and layer.dtype == np.uint8 for layer in result.layers)
    assert result.composite.shape == (64, 64, 3)
    # real alpha from the RGBA VAE: it varies over the picture (no opaque rectangle)
    assert all(len(np.unique(layer[..., 3])) > 8 for layer in result.layers)
    # the composite is frame 0 of the same run: decoding it again gives the same pixels
    assert np.array_equal(qwen_image.LAYERED.decompose.run(pipe, call).composite, result.composite)
    # The tiny model is untrained, so its layers do not add up to its composite; the number
    # is measured and reported like the engine reports it (composite_error), bounded by 255.
    error = np.abs(_alpha_composite(result.layers) - result.composite).mean()
    assert 0.0 <= error <= 255.0


def test_frame_zero_is_what_the_pipeline_generated_beside_the_layers(models_dir) -> None:
    """Frame 1.. decoded by ``decode_frame`` equal the pipeline's own decoded layers: the same
    decode gives frame 0, the composite the pipeline drops."""
    pipe = _pipe(models_dir, "layered", qwen_image.LAYERED)
    holder: dict = {}
    generator = torch.Generator("cpu").manual_seed(5)
    from PIL import Image

    source = Image.fromarray(_image()).convert("RGBA")
    with qwen_run.sized(pipe, 640):
        output = pipe(
            image=source,
            prompt="a red square",
            layers=2,
            num_inference_steps=2,
            generator=generator,
            output_type="np",
            resolution=640,
            true_cfg_scale=1.0,
            callback_on_step_end=lambda p, i, t, kw: holder.update(kw) or kw,
        )
        frames = np.asarray(output.images[0])
        h, w = frames.shape[1:3]
        second = qwen_run.decode_frame(pipe, holder["latents"], w, h, 2, 1)
    assert np.abs(second - frames[0]).max() < 1e-5


# -- other file formats ----------------------------------------------------------------------


def test_a_gguf_transformer_matches_the_full_precision_file(engine, models_dir) -> None:
    target = models_dir / "checkpoints" / "tiny_qwen_image_base-Q8_0.gguf"
    assert detect_checkpoint(target).family == "qwen_image"
    full = engine.generate(_request("txt2img"))[0].image.astype(int)
    quantised = engine.generate(_request("txt2img", model="tiny_qwen_image_base-Q8_0"))[0].image
    assert np.abs(full - quantised.astype(int)).mean() < 4.0  # Q8_0 is close to lossless
