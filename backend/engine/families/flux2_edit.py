"""Instruction editing with FLUX.2 klein (mode "edit"; the family's ``EditSpec.run``).

Without a mask: ``Flux2KleinPipeline`` with ``image=[input, *references]``: klein conditions on
every image given (each as its own set of tokens at its own time offset) and generates a new
picture of the input's size. With a mask: ``Flux2KleinInpaintPipeline``, which takes the input
as the picture to repaint (outside the mask it is kept on every step) and as conditioning, and
the references as ``image_reference``; the engine composites the result through the mask
afterwards, as for every edit.

Reference limit: BFL's editing guide gives klein 4B and 9B "up to 4" reference images
(https://docs.bfl.ai/guides/prompting_editing_overview), the image being edited included, so
three references besides the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from backend.engine.types import EditCall

#: references besides the input image (BFL: up to 4 images in all for klein)
MAX_REFERENCES = 3
#: the klein image processor refuses sides under 64 px and aspect ratios over 8:1
MIN_SIDE = 64
MAX_ASPECT = 8.0


def _pil(image: np.ndarray) -> Any:
    from PIL import Image

    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] < 3 or array.dtype != np.uint8:
        raise ValueError(f"image shape={array.shape} dtype={array.dtype}: expected (h, w, 3) uint8")
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")


def _fit(image: Any) -> Any:
    """A PIL image the klein processor accepts: at least 64 px a side, at most 8:1 (larger
    pictures the pipeline itself scales to about 1024² pixels)."""
    from PIL import Image

    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT:  # centre crop to 8:1
        if width > height:
            keep = int(height * MAX_ASPECT)
            image = image.crop(((width - keep) // 2, 0, (width - keep) // 2 + keep, height))
        else:
            keep = int(width * MAX_ASPECT)
            image = image.crop((0, (height - keep) // 2, width, (height - keep) // 2 + keep))
        width, height = image.size
    if min(width, height) < MIN_SIDE:
        scale = MIN_SIDE / min(width, height)
        size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def check(call: EditCall) -> None:
    """Guard clauses over an EditCall (ValueError naming the field and its value)."""
    if len(call.references) > MAX_REFERENCES:
        raise ValueError(
            f"references: {len(call.references)} given; FLUX.2 klein takes at most "
            f"{MAX_REFERENCES} besides the input image"
        )
    height, width = np.asarray(call.image).shape[:2]
    if (width, height) != (call.width, call.height):
        raise ValueError(f"image size={width}x{height}: expected {call.width}x{call.height}")
    if call.mask is not None and np.asarray(call.mask).shape != (call.height, call.width):
        raise ValueError(
            f"mask shape={np.asarray(call.mask).shape}: expected {(call.height, call.width)}"
        )
    if call.steps < 1:
        raise ValueError(f"steps={call.steps}: expected 1 or more")
    if not call.seeds:
        raise ValueError("seeds=[]: expected one seed per output")


def run(pipe: Any, call: EditCall) -> list[np.ndarray]:
    """Edit ``call.image`` by ``call.prompt`` with ``pipe`` (the loaded klein pipeline):
    one (H, W, 3) uint8 RGB picture per seed; ``call.on_step`` every step."""
    import torch

    from backend.engine.families import flux2_pipes
    from backend.engine.families.flux2_klein import encode
    from backend.engine.pipelines import share_components
    from backend.engine.schedulers import schedule_length

    # 1. Check, encode the instruction, pick the pipeline.
    check(call)
    embeds = encode(pipe, call.prompt, call.negative_prompt).pipeline_kwargs()
    image = _pil(call.image)
    references = [_fit(_pil(reference)) for reference in call.references]
    common: dict[str, Any] = {
        **embeds,
        "guidance_scale": float(call.cfg_scale),
        "output_type": "np",
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    if call.mask is None:
        task = share_components(flux2_pipes.pipeline_class("DLFlux2KleinPipeline"), pipe)
        common.update(
            image=[_fit(image), *references],
            width=call.width,
            height=call.height,
            num_inference_steps=call.steps,
        )
    else:
        from PIL import Image

        task = share_components(flux2_pipes.pipeline_class("DLFlux2KleinInpaintPipeline"), pipe)
        mask = np.clip(np.asarray(call.mask, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        strength = min(1.0, max(float(call.strength), 1e-3))
        if references:  # one batch in the pipeline: every reference at the first one's size
            size = references[0].size
            references = [r if r.size == size else r.resize(size) for r in references]
        common.update(
            image=image,
            mask_image=Image.fromarray(mask, "L"),
            image_reference=references or None,
            strength=strength,
            num_inference_steps=schedule_length(call.steps, strength, flow=True),
        )
    task.set_progress_bar_config(disable=True)
    total = call.steps * len(call.seeds)
    results: list[np.ndarray] = []
    # 2. One call per seed, reporting every step.
    for item, seed in enumerate(call.seeds):

        def on_step(
            _pipe: Any, step: int, _t: Any, tensors: dict, _done: int = item * call.steps
        ) -> dict:
            latents = flux2_pipes.unpack_latents(
                tensors["latents"], call.height, call.width, task.vae_scale_factor
            )
            call.on_step(_done + min(call.steps, step + 1), total, latents)
            return tensors

        generator = torch.Generator("cpu").manual_seed(int(seed))
        with torch.inference_mode():
            out = task(**common, generator=generator, callback_on_step_end=on_step)
        picture = np.asarray(out.images)[0]
        results.append(np.clip(picture * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return results
