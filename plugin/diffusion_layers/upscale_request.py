"""Plan and build an upscale job: which region, what size comes back, the params and parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from . import styles
from .errors import InvalidSetting
from .geometry import MIN_SIDE, Rect
from .protocol import (
    MAX_CONTROLS,
    MAX_SIDE,
    RAW_BGRA,
    RAW_GRAY,
    JobParams,
    LoraParams,
    UpscaleParams,
)
from .request import ControlImage, Part, control_params, params_part
from .settings import PluginSettings
from .upscale_settings import IN_PLACE, UpscaleSettings


def scaled_size(width: int, height: int, factor: float) -> Tuple[int, int]:
    """The output size the server returns: round(width * factor) x round(height * factor)."""
    return int(round(width * factor)), int(round(height * factor))


@dataclass(frozen=True)
class UpscalePlan:
    region: Rect  # canvas area read and sent
    factor: float  # 1.0 for "Refine in place"
    refine: bool
    out_width: int
    out_height: int
    selection: bool  # a selection mask travels (in place only)


def plan_upscale(
    up: UpscaleSettings, canvas: Rect, selection: Optional[Rect], layer: Optional[Rect]
) -> UpscalePlan:
    """New document: the whole canvas at ``up.factor``. Refine in place: factor 1 with the
    refine pass over the selection's bounds, else the active layer's, else the canvas."""
    up.check()
    if up.target == IN_PLACE:
        region, factor, refine = selection or layer or canvas, 1.0, True
    else:
        region, factor, refine = canvas, up.factor, up.refine
    if region.width < MIN_SIDE or region.height < MIN_SIDE:
        raise InvalidSetting(
            f"The area to upscale is {region.width}x{region.height} px; it needs at least "
            f"{MIN_SIDE}x{MIN_SIDE} px. Select a larger area or enlarge the canvas."
        )
    width, height = scaled_size(region.width, region.height, factor)
    if max(width, height) > MAX_SIDE:
        most = MAX_SIDE / max(region.width, region.height)
        raise InvalidSetting(
            f"x{factor:g} makes {width}x{height} px, more than the server's {MAX_SIDE} px "
            f"per side: choose a factor of at most {int(most * 100) / 100:g}."
        )
    if not refine and factor == 1.0:
        raise InvalidSetting(
            "A factor of 1 without 'Refine detail' would change nothing: raise the factor "
            "or tick 'Refine detail'."
        )
    return UpscalePlan(region, factor, refine, width, height, selection is not None)


def build_upscale(
    settings: PluginSettings,
    up: UpscaleSettings,
    plan: UpscalePlan,
    image: bytes,
    mask: Optional[bytes],
    controls: Sequence[ControlImage] = (),
) -> Tuple[JobParams, List[Part]]:
    """``mode: "upscale"`` params (img2img's parameters for the refine pass) and the parts.
    LoRAs and control layers travel only with the refine pass (the server refuses them on a
    plain upscale: nothing would use them); controls cover the region, like img2img's."""
    settings.check()
    region = plan.region
    if len(image) != region.width * region.height * 4:
        raise InvalidSetting(f"image has {len(image)} bytes, the region {region} needs more")
    if mask is not None and len(mask) != region.width * region.height:
        raise InvalidSetting(f"mask has {len(mask)} bytes, the region {region} needs more")
    params = JobParams(
        mode="upscale",
        width=region.width,
        height=region.height,
        x=region.x,
        y=region.y,
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        model=settings.model or None,
        strength=up.strength,
        steps=settings.steps,
        cfg_scale=settings.cfg_scale,
        sampler=settings.sampler,
        seed=settings.seed,
        batch=1,
        loras=[LoraParams(name=lo.name, weight=lo.weight) for lo in settings.loras]
        if plan.refine
        else [],
        style=settings.style or None,
        upscale=UpscaleParams(
            factor=plan.factor,
            model=up.model or None,
            refine=plan.refine,
            tile_size=up.tile_size,
            tile_overlap=up.tile_overlap,
        ),
    )
    parts = [Part("image", RAW_BGRA, image)]
    if mask is not None:
        parts.append(Part("mask", RAW_GRAY, mask))
    if len(controls) > MAX_CONTROLS:
        raise InvalidSetting(f"at most {MAX_CONTROLS} controls, got {len(controls)}")
    for index, item in enumerate(controls if plan.refine else ()):
        if len(item.pixels) != region.width * region.height * 4:
            raise InvalidSetting(
                f"control layer {item.control.layer!r} has {len(item.pixels)} bytes, "
                f"the region {region} needs {region.width * region.height * 4}"
            )
        name = f"control_{index}"
        params.controls.append(control_params(item.control, name))
        parts.append(Part(name, RAW_BGRA, item.pixels))
    parts.insert(0, params_part(params, styles.omitted(settings)))  # the style decides these
    return params, parts
