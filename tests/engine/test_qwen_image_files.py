"""Qwen-Image files as users keep them besides single safetensors: diffusers folders laid out
like the Hub repositories, and ComfyUI's fp8-scaled Qwen2.5-VL text encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engine import families
from backend.engine.detect import detect_checkpoint, read_header
from backend.engine.families import qwen_image, tiny_qwen
from backend.engine.types import EditCall


def _edit_call() -> EditCall:
    image = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
    return EditCall(
        prompt="make it blue",
        negative_prompt="",
        image=image,
        references=[],
        mask=None,
        width=64,
        height=64,
        steps=2,
        cfg_scale=1.0,
        guidance=None,
        seeds=[3],
        strength=1.0,
        on_step=lambda step, total, latents: None,
    )


@pytest.mark.parametrize(
    ("variant", "family", "pipeline"),
    [
        ("base", "qwen_image", "QwenImagePipeline"),
        ("edit", "qwen_image_edit", "QwenImageEditPipeline"),
        ("layered", "qwen_image_layered", "QwenImageLayeredPipeline"),
    ],
)
def test_diffusers_folders_load_like_files(tmp_path, variant, family, pipeline) -> None:
    """Folders laid out like the Hub repositories (model_index.json's class name tells the
    variant); the processor is built without its video part (no torchvision)."""
    folder = tiny_qwen.write_diffusers_folder(tmp_path / variant, variant)
    assert detect_checkpoint(folder).family == family
    loaded = families.get(family).load(str(folder), device="cpu", dtype=torch.float32)
    assert type(loaded.pipe).__name__ == pipeline and loaded.native_resolution == 64
    if variant == "edit":
        out = qwen_image.EDIT.edit.run(loaded.pipe, _edit_call())
        assert out[0].shape == (64, 64, 3)


def test_comfyui_fp8_scaled_text_encoders_are_unscaled(tmp_path) -> None:
    """ComfyUI's ``qwen_2.5_vl_7b_fp8_scaled``: fp8 weights, each with a ``scale_weight``, a
    ``scaled_fp8`` marker, no LM head: loaded, they give the bf16/fp32 file's embeddings."""
    from safetensors.torch import load_file, save_file

    from backend.engine.families import qwen_loader

    full = tiny_qwen.write_text_encoder(tmp_path / "full.safetensors")
    state, metadata = load_file(str(full)), read_header(full)[1]
    scaled: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key == "lm_head.weight":
            continue
        if key.endswith(".weight") and value.ndim == 2 and "embed" not in key:
            scale = value.abs().max() / 448.0
            scaled[key] = (value / scale).to(torch.float8_e4m3fn)
            scaled[key[: -len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            scaled[key] = value
    save_file(scaled, str(tmp_path / "fp8.safetensors"), metadata=metadata)
    assert qwen_loader.scan(tmp_path) == []  # only text_encoders/, clip/ and vae/ are read
    (tmp_path / "text_encoders").mkdir()
    for name in ("full", "fp8"):
        (tmp_path / f"{name}.safetensors").rename(
            tmp_path / "text_encoders" / f"{name}.safetensors"
        )
    found = {c.path.stem: c for c in qwen_loader.scan(tmp_path)}
    assert {c.kind for c in found.values()} == {"qwen25vl"}
    models = {name: qwen_loader.load_text_encoder(found[name], torch.float32) for name in found}
    tokenizer = tiny_qwen.build_tokenizer()
    ids = tokenizer("a red square", return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = {
            name: model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
            for name, model in models.items()
        }
    assert torch.allclose(hidden["fp8"], hidden["full"], atol=0.15)
    assert not torch.equal(hidden["fp8"], hidden["full"])  # really the fp8 weights


def test_a_folder_saved_without_its_processor_loads(tmp_path) -> None:
    """A Layered folder whose processor was saved as None (model_index [null, null]) loads;
    it decomposes with a prompt (the processor only captions an empty one)."""
    import json

    folder = tiny_qwen.write_diffusers_folder(tmp_path / "layered", "layered")
    index = json.loads((folder / "model_index.json").read_text())
    index["processor"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    loaded = qwen_image.LAYERED.load(str(folder), device="cpu", dtype=torch.float32)
    assert loaded.pipe.processor is None
    from backend.engine.types import DecomposeCall

    call = DecomposeCall(
        prompt="a red square",
        negative_prompt="",
        image=_edit_call().image,
        layers=2,
        width=64,
        height=64,
        steps=2,
        cfg_scale=1.0,
        seed=1,
        on_step=lambda step, total, latents: None,
    )
    assert len(qwen_image.LAYERED.decompose.run(loaded.pipe, call).layers) == 2
    from backend.engine.errors import InvalidRequest

    call.prompt = ""
    with pytest.raises(InvalidRequest) as caught:
        qwen_image.LAYERED.decompose.run(loaded.pipe, call)
    assert caught.value.field == "prompt" and "describe the picture" in caught.value.message


def test_an_edit_2511_file_runs_with_zero_cond_t(tmp_path) -> None:
    """Edit-2511 differs from 2509 only by a config flag (``zero_cond_t``); its file's metadata
    names it, and the loaded transformer has the flag, which changes the edit."""
    root = tmp_path
    tiny_qwen.write_tiny_qwen_image(root, "edit_plus")
    newer = root / "checkpoints" / "edit-2511.safetensors"
    tiny_qwen.write_transformer(newer, "edit_plus", architecture="qwen-image-edit-2511")
    assert detect_checkpoint(newer).family == "qwen_image_edit_plus"
    pipes = {
        name: qwen_image.EDIT_PLUS.load(
            str(root / "checkpoints" / f"{name}.safetensors"),
            device="cpu",
            dtype=torch.float32,
            models_dir=str(root),
        ).pipe
        for name in ("tiny_qwen_image_edit_plus", "edit-2511")
    }
    assert pipes["edit-2511"].transformer.config.zero_cond_t is True
    assert pipes["tiny_qwen_image_edit_plus"].transformer.config.zero_cond_t is False
    older, newer_out = (
        qwen_image.EDIT_PLUS.edit.run(pipe, _edit_call())[0] for pipe in pipes.values()
    )
    assert not np.array_equal(older, newer_out)
