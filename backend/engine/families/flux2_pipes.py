"""The FLUX.2 klein task pipelines: diffusers' own, plus img2img, which diffusers 0.42 lacks.

``Flux2KleinPipeline`` (txt2img and reference editing) and ``Flux2KleinInpaintPipeline``
(inpaint, optionally with a reference image) are diffusers'. Our subclasses add one thing each:
``_unpack_latents`` (packed (B, tokens, 128) step latents -> (B, 32, H/8, W/8) for the step
previews, as pipelines.py asks every packed-latent pipeline). ``DLFlux2KleinImg2ImgPipeline``
is img2img done the way the inpaint pipeline starts: the source is encoded (patchified and
batch-normalised as the transformer sees latents), noised to the schedule's sigma at
``strength`` on the same flow-matching schedule a full run uses (klein's resolution-dependent
shift ``mu``), and only the remaining steps are denoised. Unlike the inpaint pipeline, the source
is NOT also given to the transformer as a reference image: at strength 1 the picture is new.

The engine finds task pipeline classes by name through ``Family.pipeline_type``: the family
lists these (``classes``) under names diffusers does not use (``DLFlux2Klein*``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NAMES = ("DLFlux2KleinPipeline", "DLFlux2KleinImg2ImgPipeline", "DLFlux2KleinInpaintPipeline")


def unpack_latents(latents: Any, height: int, width: int, vae_scale_factor: int) -> Any:
    """Packed FLUX.2 latents (B, (H/16)(W/16), 4C) -> (B, C, H/8, W/8) (``height``/``width``
    in pixels; tokens in row-major order as the pipelines make them)."""
    batch, tokens, channels = latents.shape
    rows, cols = height // (vae_scale_factor * 2), width // (vae_scale_factor * 2)
    if rows * cols != tokens:
        raise ValueError(f"latents={tuple(latents.shape)}: expected {rows * cols} tokens")
    grid = latents.permute(0, 2, 1).reshape(batch, channels, rows, cols)
    grid = grid.reshape(batch, channels // 4, 2, 2, rows, cols).permute(0, 1, 4, 2, 5, 3)
    return grid.reshape(batch, channels // 4, rows * 2, cols * 2)


def _classes() -> dict[str, type]:
    import torch
    from diffusers import Flux2KleinInpaintPipeline, Flux2KleinPipeline
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu
    from diffusers.utils.torch_utils import randn_tensor

    class DLFlux2KleinPipeline(Flux2KleinPipeline):
        """diffusers' Flux2KleinPipeline with step-preview unpacking."""

        _unpack_latents = staticmethod(unpack_latents)

    class DLFlux2KleinInpaintPipeline(Flux2KleinInpaintPipeline):
        """diffusers' Flux2KleinInpaintPipeline with step-preview unpacking."""

        _unpack_latents = staticmethod(unpack_latents)

    class DLFlux2KleinImg2ImgPipeline(DLFlux2KleinPipeline):
        """img2img for FLUX.2 klein (see the module doc). ``image``: the source (PIL, any
        size; resized to ``width`` x ``height``); ``strength`` 0..1: the part of the schedule
        that runs (1 = from pure noise)."""

        @torch.no_grad()
        def __call__(  # type: ignore[override]
            self,
            image: Any = None,
            prompt: Any = None,
            strength: float = 0.6,
            num_inference_steps: int = 4,
            height: int | None = None,
            width: int | None = None,
            generator: Any = None,
            prompt_embeds: Any = None,
            negative_prompt_embeds: Any = None,
            guidance_scale: float = 1.0,
            num_images_per_prompt: int = 1,
            output_type: str = "pil",
            return_dict: bool = True,
            attention_kwargs: dict[str, Any] | None = None,
            callback_on_step_end: Any = None,
            callback_on_step_end_tensor_inputs: list[str] | None = None,
            max_sequence_length: int = 512,
            text_encoder_out_layers: tuple[int, ...] = (9, 18, 27),
        ) -> Any:
            if image is None:
                raise ValueError("image=None: img2img needs a source image")
            if not 0.0 < strength <= 1.0:
                raise ValueError(f"strength={strength}: expected 0 < strength <= 1")
            width = int(width or image.size[0])
            height = int(height or image.size[1])
            device = self._execution_device
            # 1. The source as the transformer sees latents.
            pixels = self.image_processor.preprocess(image, height=height, width=width)
            vae_device = next(self.vae.parameters()).device
            pixels = pixels.to(device=vae_device, dtype=self.vae.dtype)
            source = self._encode_vae_image(pixels, generator=None).to(device)
            # 2. The full run's schedule, cut where ``strength`` of it remains.
            steps = int(num_inference_steps)
            sigmas = np.linspace(1.0, 1.0 / steps, steps)
            tokens = int(source.shape[2] * source.shape[3])
            mu = compute_empirical_mu(image_seq_len=tokens, num_steps=steps)
            self.scheduler.set_timesteps(sigmas=sigmas, device=device, mu=mu)
            start = int(max(steps - min(steps * strength, steps), 0))
            if start >= steps:
                raise ValueError(
                    f"strength={strength}: with {steps} steps no step would run; raise either"
                )
            sigma = float(self.scheduler.sigmas[start])
            # 3. Noise to that sigma (flow matching: a straight line from source to noise).
            dtype = prompt_embeds.dtype if prompt_embeds is not None else self.transformer.dtype
            noise = randn_tensor(source.shape, generator=generator, device=device, dtype=dtype)
            latents = (1.0 - sigma) * source.to(dtype) + sigma * noise
            return super().__call__(
                prompt=prompt,
                prompt_embeds=prompt_embeds,
                latents=latents,
                sigmas=list(sigmas[start:]),
                num_inference_steps=steps,
                height=height,
                width=width,
                generator=generator,
                negative_prompt_embeds=negative_prompt_embeds,
                guidance_scale=guidance_scale,
                num_images_per_prompt=num_images_per_prompt,
                output_type=output_type,
                return_dict=return_dict,
                attention_kwargs=attention_kwargs,
                callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs
                or ["latents"],
                max_sequence_length=max_sequence_length,
                text_encoder_out_layers=text_encoder_out_layers,
            )

    return {
        "DLFlux2KleinPipeline": DLFlux2KleinPipeline,
        "DLFlux2KleinImg2ImgPipeline": DLFlux2KleinImg2ImgPipeline,
        "DLFlux2KleinInpaintPipeline": DLFlux2KleinInpaintPipeline,
    }


_CLASSES: dict[str, type] = {}


def classes() -> dict[str, type]:
    """Our pipeline classes by name (built on first use; ``Family.pipeline_classes``)."""
    if not _CLASSES:
        _CLASSES.update(_classes())
    return dict(_CLASSES)


def pipeline_class(name: str) -> type:
    """One of ``NAMES``."""
    found = classes()
    if name not in found:
        raise KeyError(f"name={name!r}: expected one of {', '.join(NAMES)}")
    return found[name]
