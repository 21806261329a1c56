"""The benchmark scenarios: one generation each, described once for both sides.

``Scenario.plain_kwargs()`` is the plain diffusers call and ``Scenario.job_params()`` the same
generation as a ``POST /v1/jobs`` params part (plus ``inputs()`` for its image parts), so the
baseline and our server always run the same work: same model folder, sampler (DPM++ 2M),
steps, CFG, size and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backend.bench.weights import CONTROLNET, SD15, SD15_INPAINT, SDXL

PROMPT = "a watercolour fox in a snowy birch forest, soft light"
NEGATIVE = "blurry, low quality"
SEED = 1234
TRANSFER = "transfer_2048"
TRANSFER_SIZE = 2048


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str  # checkpoint folder name under <models>/checkpoints
    mode: str  # txt2img | img2img | inpaint
    width: int
    height: int
    steps: int = 20
    cfg_scale: float = 7.0
    strength: float = 1.0
    controlnet: bool = False

    @property
    def family(self) -> str:
        return "sdxl" if self.model == SDXL else "sd15"

    def inputs(self) -> dict[str, np.ndarray]:
        """Deterministic RGBA image / gray mask / control map for the modes that need them."""
        rng = np.random.default_rng(7)
        h, w = self.height, self.width
        out: dict[str, np.ndarray] = {}
        if self.mode in ("img2img", "inpaint"):
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], -1)
            noise = rng.integers(0, 24, (h, w, 3))
            rgba = np.concatenate([rgb + noise, np.full((h, w, 1), 255)], -1)
            out["image"] = rgba.clip(0, 255).astype(np.uint8)
        if self.mode == "inpaint":
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
            out["mask"] = mask
        if self.controlnet:
            edges = np.zeros((h, w, 4), np.uint8)
            edges[..., 3] = 255
            edges[h // 3, :, :3] = 255
            edges[:, w // 2, :3] = 255
            out["control_0"] = edges
        return out

    def job_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "mode": self.mode,
            "model": self.model,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "sampler": "dpmpp_2m",
            "seed": SEED,
            "strength": self.strength,
        }
        if self.controlnet:
            params["controls"] = [
                {"type": "canny", "image": "control_0", "model": CONTROLNET, "preprocess": False}
            ]
        return params

    def plain_kwargs(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        from PIL import Image

        kwargs: dict[str, Any] = {
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "num_inference_steps": self.steps,
            "guidance_scale": self.cfg_scale,
            "width": self.width,
            "height": self.height,
            "output_type": "pil",
        }
        if "image" in inputs:
            kwargs["image"] = Image.fromarray(inputs["image"][..., :3])
        if self.mode == "img2img":
            kwargs["strength"] = self.strength
            del kwargs["width"], kwargs["height"]
        if "mask" in inputs:
            kwargs["mask_image"] = Image.fromarray(inputs["mask"])
        if self.controlnet:
            kwargs["image"] = Image.fromarray(inputs["control_0"][..., :3])
        return kwargs

    def plain_class(self) -> str:
        if self.controlnet:
            return "StableDiffusionControlNetPipeline"
        if self.family == "sdxl":
            return "StableDiffusionXLPipeline"
        return {
            "txt2img": "StableDiffusionPipeline",
            "img2img": "StableDiffusionImg2ImgPipeline",
            "inpaint": "StableDiffusionInpaintPipeline",
        }[self.mode]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("sd15_txt2img_512", SD15, "txt2img", 512, 512),
    Scenario("sd15_inpaint_512", SD15_INPAINT, "inpaint", 512, 512),
    Scenario("sd15_controlnet_512", SD15, "txt2img", 512, 512, controlnet=True),
    Scenario("sdxl_txt2img_1024", SDXL, "txt2img", 1024, 1024),
    # Live painting: img2img, 4 denoising steps (8 x strength 0.5), no CFG.
    Scenario("sd15_live_512", SD15, "img2img", 512, 512, steps=8, cfg_scale=1.0, strength=0.5),
)
NAMES = tuple(s.name for s in SCENARIOS) + (TRANSFER,)


def tiny_scenarios() -> tuple[Scenario, ...]:
    """The same scenarios on the tiny models: 64 px, 2 denoising steps (CI, CPU)."""
    out = []
    for s in SCENARIOS:
        steps = 4 if s.strength < 1.0 else 2
        out.append(replace(s, width=64, height=64, steps=steps))
    return tuple(out)


def select(names: list[str] | None, tiny: bool) -> tuple[Scenario, ...]:
    """The scenarios to run, in the canonical order; guards against unknown names."""
    pool = tiny_scenarios() if tiny else SCENARIOS
    if not names:
        return pool
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"scenario={unknown[0]!r}: expected one of {', '.join(NAMES)}")
    return tuple(s for s in pool if s.name in names)
