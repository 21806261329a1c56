"""Turn a validated ``JobParams`` plus its image parts into the engine's ``GenerationRequest``.

Guard clauses name the bad parameter and its value. Names of models, LoRAs and ControlNets
that are not in the inventory verbatim must not look like paths (``../x``, ``/etc/passwd``,
NUL, ...): those are refused here, before the engine sees them.
"""

from __future__ import annotations

import re
import secrets

from backend.api.errors import PayloadTooLarge, Unprocessable
from backend.api.image_parts import check_parts, decode_controls, region_size
from backend.api.images import decode_image, decode_mask
from backend.api.multipart import Part
from backend.engine.types import (
    ControlInput,
    GenerationRequest,
    InpaintSettings,
    Inventory,
    LoraInput,
    UpscaleSettings,
)
from backend.protocol import MAX_SEED, JobParams

_PATHLIKE = re.compile(r"(^[.~])|[/\\:\x00-\x1f\x7f]|(\.\.)")


def inventory_names(inventory: Inventory) -> set[str]:
    names = {c.name for c in inventory.checkpoints}
    names |= {c.name for c in inventory.controlnets}
    names |= {lo.name for lo in inventory.loras}
    names |= {vae.name for vae in inventory.vaes}
    names |= {adapter.name for adapter in inventory.ipadapters}
    names |= {entry.name for entry in inventory.upscalers}
    return names


def check_name(field: str, name: str | None, known: set[str]) -> None:
    """Refuse a path-like name unless the inventory lists exactly that name."""
    if name is None or name in known:
        return
    if _PATHLIKE.search(name):
        raise Unprocessable(
            f"{field}={name[:80]!r}: a model name, not a path (see GET /v1/models)", field=field
        )


def check_names(params: JobParams, known: set[str]) -> None:
    check_name("model", params.model, known)
    check_name("vae", params.vae, known)
    check_name("upscale.model", params.upscale.model, known)
    for i, lora in enumerate(params.loras):
        check_name(f"loras[{i}].name", lora.name, known)
    for i, control in enumerate(params.controls):
        check_name(f"controls[{i}].model", control.model, known)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"width x height={width}x{height}: {width * height} pixels is over the server's "
            f"limit of {max_pixels}",
            field="width",
        )


def resolve_seed(seed: int, batch: int) -> int:
    """-1 becomes a random seed that leaves room for ``seed + i`` over the batch."""
    if seed != -1:
        return seed
    return secrets.randbelow(MAX_SEED - batch + 1)


def build_request(
    params: JobParams, parts: dict[str, Part], max_pixels: int, known: set[str]
) -> GenerationRequest:
    """The engine request for ``params`` and its parts (4xx ApiErrors on bad input)."""
    # 1. Names, and the parts this mode and these controls use (image_parts.py): cheap,
    #    before any pixel is decoded.
    check_names(params, known)
    control_parts = [c.image for c in params.controls]
    inpaint = InpaintSettings(**params.inpaint.model_dump())
    check_parts(params.mode, parts, control_parts, inpaint)
    # 2. The region: the params' size, else the image file's own; then the pixel limit.
    size = region_size(params.width, params.height, params.mode, parts.get("image"), max_pixels)
    check_pixels(*size, max_pixels)
    # 3. Decode images into the engine's types (one part may serve several controls).
    image = mask = None
    if "image" in parts:
        part = parts["image"]
        image = decode_image(part.view, part.content_type, "image", size, max_pixels)
    if "mask" in parts:
        part = parts["mask"]
        mask = decode_mask(part.view, part.content_type, "mask", size, max_pixels)
    # An edit's reference images (reference controls without a model) keep their own size.
    references = frozenset(
        c.image
        for c in params.controls
        if params.mode == "edit" and c.type == "reference" and c.model is None
    )
    decoded = decode_controls(control_parts, parts, size, max_pixels, references)
    controls = []
    for control, pixels in zip(params.controls, decoded, strict=True):
        controls.append(
            ControlInput(
                type=control.type,
                image=pixels,
                model=control.model,
                strength=control.strength,
                start=control.start,
                end=control.end,
                preprocess=control.preprocess,
            )
        )
    # 4. Assemble, resolving the seed.
    return GenerationRequest(
        mode=params.mode,
        width=size[0],
        height=size[1],
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        model=params.model,
        vae=params.vae,
        image=image,
        mask=mask,
        strength=params.strength,
        steps=params.steps,
        cfg_scale=params.cfg_scale,
        sampler=params.sampler,
        seed=resolve_seed(params.seed, params.batch),
        batch=params.batch,
        clip_skip=params.clip_skip,
        controls=controls,
        loras=[LoraInput(name=lo.name, weight=lo.weight) for lo in params.loras],
        inpaint=inpaint,
        upscale=UpscaleSettings(**params.upscale.model_dump()),
        hires=params.hires,
        layers=params.layers,
        x=params.x,
        y=params.y,
    )
