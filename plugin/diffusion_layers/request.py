"""Build ``POST /v1/jobs`` and ``POST /v1/preprocess``: the params JSON and the image parts.

Images travel raw (8-bit BGRA, 8-bit gray masks) — Krita's own layout, no PNG encoding on
either side. ``encode_multipart`` produces the exact bytes (used by tests and as a fallback);
the client sends the same parts through QHttpMultiPart.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

from . import model_capabilities, styles
from .errors import InvalidSetting
from .geometry import Rect
from .mode import ModeChoice
from .protocol import (
    MAX_CONTROLS,
    RAW_BGRA,
    RAW_GRAY,
    ControlParams,
    JobParams,
    LoraParams,
    Message,
    PreprocessParams,
)
from .settings import ControlLayer, PluginSettings

if TYPE_CHECKING:
    from .planning import Plan
    from .protocol import ModelsInfo


@dataclass
class Part:
    name: str
    content_type: str
    data: bytes


@dataclass
class ControlImage:
    control: ControlLayer
    pixels: bytes  # BGRA8 of the layer over the region


def build_job(
    settings: PluginSettings,
    choice: ModeChoice,
    region: Rect,
    image: Optional[bytes],
    mask: Optional[bytes],
    controls: List[ControlImage],
) -> Tuple[JobParams, List[Part]]:
    """1. check sizes, 2. fill JobParams, 3. attach image, mask and control parts."""
    settings.check()
    n_pixels = region.width * region.height
    if image is not None and len(image) != n_pixels * 4:
        raise InvalidSetting(f"image has {len(image)} bytes, region needs {n_pixels * 4}")
    if mask is not None and len(mask) != n_pixels:
        raise InvalidSetting(f"mask has {len(mask)} bytes, region needs {n_pixels}")
    if len(controls) > MAX_CONTROLS:
        raise InvalidSetting(f"at most {MAX_CONTROLS} controls, got {len(controls)}")
    params = JobParams(
        mode=choice.mode,
        width=region.width,
        height=region.height,
        x=region.x,
        y=region.y,
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        model=settings.model or None,
        strength=1.0 if choice.mode in ("txt2img", "edit") else settings.strength,
        steps=settings.steps,
        cfg_scale=settings.cfg_scale,
        sampler=settings.sampler,
        seed=settings.seed,
        batch=settings.batch,
        loras=[LoraParams(name=lo.name, weight=lo.weight) for lo in settings.loras],
        style=settings.style or None,
        hires=settings.hires,
    )
    parts: List[Part] = []
    if choice.sends_image and image is not None:
        parts.append(Part("image", RAW_BGRA, image))
    if choice.uses_selection and mask is not None:
        parts.append(Part("mask", RAW_GRAY, mask))
    for index, item in enumerate(controls):
        if len(item.pixels) != n_pixels * 4:
            raise InvalidSetting(
                f"control layer {item.control.layer!r} has {len(item.pixels)} bytes, "
                f"region needs {n_pixels * 4}"
            )
        name = f"control_{index}"
        params.controls.append(control_params(item.control, name))
        parts.append(Part(name, RAW_BGRA, item.pixels))
    return params, [params_part(params, styles.omitted(settings))] + parts


def build_planned(
    settings: PluginSettings, plan: "Plan", models: "Optional[ModelsInfo]"
) -> Tuple[JobParams, List[Part]]:
    """``build_job`` for a planned job, after the checks that need the server's lists
    (unknown ``<lora:…>`` names in the prompt are refused with a sentence, and so is a mode
    the chosen model lacks: model_capabilities.py)."""
    styles.check_inline_loras(settings.prompt, settings.negative_prompt, models)
    capabilities = model_capabilities.check_mode(models, settings.model, plan.choice.mode)
    settings = model_capabilities.effective_settings(settings, capabilities)
    return build_job(settings, plan.choice, plan.region, plan.image, plan.mask, plan.controls)


def control_params(control: ControlLayer, image: str) -> ControlParams:
    """A control layer as the request's control (ControlNet map or reference image)."""
    return ControlParams(
        type=control.type,
        image=image,
        strength=control.strength,
        start=control.start,
        end=control.end,
    )


def params_part(params: Message, leave_out: List[str]) -> Part:
    """The ``params`` JSON part; ``leave_out``: keys the server's style decides."""
    data = {k: v for k, v in params.to_dict().items() if k not in leave_out}
    return Part("params", "application/json", json.dumps(data, separators=(",", ":")).encode())


def build_preprocess(control_type: str, region: Rect, pixels: bytes) -> List[Part]:
    params = PreprocessParams(type=control_type, width=region.width, height=region.height)
    if len(pixels) != region.width * region.height * 4:
        raise InvalidSetting(f"layer has {len(pixels)} bytes, region {region} needs more")
    return [
        Part("params", "application/json", params.to_json().encode("utf-8")),
        Part("image", RAW_BGRA, pixels),
    ]


def encode_multipart(parts: List[Part], boundary: Optional[str] = None) -> Tuple[str, bytes]:
    """multipart/form-data body for ``parts`` → (content type header, body bytes)."""
    boundary = boundary or uuid.uuid4().hex
    chunks: List[bytes] = []
    for part in parts:
        disposition = f'form-data; name="{part.name}"'
        if part.content_type != "application/json":
            disposition += f'; filename="{part.name}"'
        head = (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {part.content_type}\r\n\r\n"
        )
        chunks += [head.encode("ascii"), part.data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)
