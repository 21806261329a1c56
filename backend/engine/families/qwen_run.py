"""Qwen-Image edit (``EditSpec.run``) and decomposition (``DecomposeSpec.run``).

Edit runs QwenImageEditPipeline (one input image) or QwenImageEditPlusPipeline (the input
image first, then the references); with a mask and a QwenImageEditPipeline it runs
QwenImageEditInpaintPipeline built from it (Edit-Plus has no inpaint pipeline: the engine
composites its result through the mask). Decompose runs QwenImageLayeredPipeline: its output
holds layers 1..N of the unpacked latents decoded as RGBA, and it drops frame 0 (the
composite it generated alongside); we keep the final latents from the step callback and decode
frame 0 with the same VAE. Layer order is the pipeline's frame order after the composite,
which we return as is (index 0 = bottom, see docs/engine.md "Qwen-Image").

Sizes: the edit pipelines resize their inputs to a 1024² area (the VAE's and the model's
working size) and the Layered pipeline to a 640² or 1024² bucket. Models with a smaller native
size (the tiny test models, 64 px) scale those areas by (native / 1024)² (Layered: by
(native / bucket)²) while they run, so a 64 px test does not encode 1024 px images on the CPU.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from backend.engine.types import DecomposeCall, Decomposition, EditCall

_MODULES = ("edit", "edit_inpaint", "edit_plus", "layered")
REFERENCE_SIDE = 1024  # the area side the pipelines resize to


@contextlib.contextmanager
def sized(pipe: Any, reference: int = REFERENCE_SIDE) -> Iterator[None]:
    """While it runs, the pipelines' ``reference``²-area sizing (1024 for the edit pipelines,
    Layered's bucket) scaled to ``pipe``'s native size."""
    native = int(getattr(pipe, "_dl_native_size", None) or reference)
    if native >= reference:
        yield
        return
    factor = (native / reference) ** 2
    prefix = "diffusers.pipelines.qwenimage.pipeline_qwenimage_"
    modules = [importlib.import_module(prefix + name) for name in _MODULES]
    originals = [module.calculate_dimensions for module in modules]

    def scaled(original: Any) -> Any:
        return lambda area, ratio: original(area * factor, ratio)

    for module, original in zip(modules, originals, strict=True):
        module.calculate_dimensions = scaled(original)
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.calculate_dimensions = original


def _pil(image: np.ndarray, mode: str = "RGB") -> Any:
    from PIL import Image

    rgb = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
    return rgb if mode == "RGB" else rgb.convert(mode)


def _steps(call: Any, holder: dict[str, Any] | None = None) -> Any:
    """A ``callback_on_step_end`` that reports every step to ``call.on_step`` (cancel raises
    from it) and keeps the latest latents in ``holder``. Latents are reported unpacked as
    (B, C, h, w) for step previews: the edit itself, or Layered's frame 0 (its composite)."""

    def callback(pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = kwargs.get("latents")
        preview = None
        if holder is not None:
            holder["latents"] = latents
            preview = _layered_frame0(pipe, latents, call)
        elif latents is not None and latents.ndim == 3:
            frames = pipe._unpack_latents(latents, call.height, call.width, pipe.vae_scale_factor)
            preview = frames[:, :, 0]  # (B, C, 1, h, w): one frame
        call.on_step(step + 1, int(call.steps), preview)
        return kwargs

    return callback


def _layered_frame0(pipe: Any, latents: Any, call: Any) -> Any:
    """Frame 0 of Layered's packed (B, (N+1) * tokens, C * 4) latents as (B, C, h, w); the
    frame's token grid follows the picture's aspect (the pipeline's bucket size); None when
    it cannot be told."""
    import math

    tokens = latents.shape[1] // (call.layers + 1)
    rows = max(1, round(math.sqrt(tokens * call.height / call.width)))
    if tokens % rows:
        return None
    side = 2 * pipe.vae_scale_factor  # pixels per packed token
    frames = pipe._unpack_latents(
        latents, rows * side, tokens // rows * side, call.layers, pipe.vae_scale_factor
    )
    return frames[:, :, 0]


def _guidance(call: Any) -> dict[str, Any]:
    """True CFG (a negative pass) only above 1, as the pipelines do."""
    if call.cfg_scale > 1.0:
        return {"true_cfg_scale": call.cfg_scale, "negative_prompt": call.negative_prompt or " "}
    return {"true_cfg_scale": 1.0}


def run_edit(pipe: Any, call: EditCall) -> list[np.ndarray]:
    """One (H, W, 3) uint8 RGB edit of ``call.image`` per seed (see the module doc)."""
    import torch

    from backend.engine.pipelines import share_components

    plus = "EditPlus" in type(pipe).__name__
    images: Any = [_pil(call.image)] + [_pil(r) for r in call.references] if plus else None
    runner = pipe
    extra: dict[str, Any] = {}
    if call.mask is not None and not plus:
        import diffusers

        runner = share_components(diffusers.QwenImageEditInpaintPipeline, pipe)
        runner.set_progress_bar_config(disable=True)
        mask = np.clip(call.mask * 255.0 + 0.5, 0, 255).astype(np.uint8)
        extra = {"mask_image": _pil(np.repeat(mask[..., None], 3, axis=2), "L")}
        extra["strength"] = float(call.strength)
    outputs = []
    for seed in call.seeds:
        with sized(pipe):
            result = runner(
                image=images if plus else _pil(call.image),
                prompt=call.prompt,
                width=call.width,
                height=call.height,
                num_inference_steps=call.steps,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
                callback_on_step_end=_steps(call),
                **_guidance(call),
                **extra,
            )
        image = np.asarray(result.images[0])
        outputs.append(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., :3])
    return outputs


def _to_uint8(frames: Any) -> np.ndarray:
    array = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else frames
    return np.clip(np.asarray(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def decode_frame(pipe: Any, latents: Any, width: int, height: int, layers: int, frame: int) -> Any:
    """Frame ``frame`` of the Layered pipeline's packed final ``latents`` decoded by its VAE as
    the pipeline decodes its layers: (H, W, C) float 0..1 (C = the VAE's channels)."""
    import torch

    unpacked = pipe._unpack_latents(latents, height, width, layers, pipe.vae_scale_factor)
    vae = pipe.vae
    unpacked = unpacked[:, :, frame : frame + 1].to(vae.dtype)
    mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1)
    unpacked = unpacked * std.to(unpacked) + mean.to(unpacked)
    with torch.inference_mode():
        image = vae.decode(unpacked, return_dict=False)[0][:, :, 0]
    return pipe.image_processor.postprocess(image, output_type="np")[0]


def run_decompose(pipe: Any, call: DecomposeCall) -> Decomposition:
    """``call.layers`` RGBA layers of ``call.image`` (bottom first) and the pipeline's own
    composite, each at ``call.width`` x ``call.height`` (see the module doc)."""
    import torch
    from PIL import Image

    if not call.prompt.strip() and getattr(pipe, "processor", None) is None:
        from backend.engine.errors import InvalidRequest

        raise InvalidRequest(
            "prompt",
            call.prompt,
            "describe the picture: without a prompt Qwen-Image-Layered captions it with its "
            "processor, which this model folder does not have",
        )
    rgba = int(pipe.vae.config.get("input_channels", 3)) == 4
    holder: dict[str, Any] = {}
    resolution = 640 if max(call.width, call.height) <= 800 else 1024
    with sized(pipe, resolution):
        result = pipe(
            image=_pil(call.image, "RGBA" if rgba else "RGB"),
            prompt=call.prompt or None,
            layers=call.layers,
            num_inference_steps=call.steps,
            generator=torch.Generator("cpu").manual_seed(call.seed),
            output_type="np",
            resolution=resolution,
            cfg_normalize=True,  # as the model card runs it
            use_en_prompt=True,  # an empty prompt: the pipeline captions the image in English
            callback_on_step_end=_steps(call, holder),
            **_guidance(call),
        )
        frames = np.asarray(result.images[0])  # (N, h, w, C) float 0..1
        h, w = frames.shape[1:3]
        composite = decode_frame(pipe, holder["latents"], w, h, call.layers, 0)

    def resized(array: np.ndarray, mode: str) -> np.ndarray:
        image = Image.fromarray(_to_uint8(array), mode)
        return np.asarray(image.resize((call.width, call.height), Image.Resampling.LANCZOS))

    layers = []
    for frame in frames:
        if frame.shape[2] == 3:  # an RGB VAE: no alpha to give (refused at load, see qwen_image)
            frame = np.concatenate([frame, np.ones_like(frame[..., :1])], axis=2)
        layers.append(resized(frame, "RGBA"))
    return Decomposition(layers=layers, composite=resized(composite[..., :3], "RGB"))
