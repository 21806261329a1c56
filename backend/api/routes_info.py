"""``GET /v1/health`` (version and capability handshake) and ``GET /v1/models``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from backend import __version__
from backend.api.context import ApiContext, get_context
from backend.protocol import (
    PROTOCOL_VERSION,
    CheckpointInfo,
    ControlNetInfo,
    Health,
    LoraInfo,
    ModelsInfo,
    VaeInfo,
)

CAPABILITIES = (
    "txt2img",
    "img2img",
    "inpaint",
    "outpaint",
    "controlnet",
    "lora",
    "raw-images",
    "sse",
    "preprocess",
    "cancel",
    "live",
)

router = APIRouter(prefix="/v1", tags=["info"])


@router.get("/health", response_model=Health)
async def health(ctx: ApiContext = Depends(get_context)) -> Health:
    queue = ctx.queue
    return Health(
        status=queue.status,  # type: ignore[arg-type]
        ready=queue.ready,
        version=__version__,
        protocol=PROTOCOL_VERSION,
        device=str(ctx.engine.device),
        dtype=str(ctx.engine.dtype),
        model=ctx.engine.loaded_model,
        queue_length=queue.queue_length(),
        capabilities=list(CAPABILITIES),
        error=queue.status_error,
    )


@router.get("/models", response_model=ModelsInfo)
async def models(ctx: ApiContext = Depends(get_context)) -> ModelsInfo:
    engine = ctx.engine
    # Listing may touch the disk: keep it off the event loop.
    inventory = await asyncio.to_thread(engine.inventory)
    return ModelsInfo(
        default=ctx.settings.default_model or engine.loaded_model,
        checkpoints=[
            CheckpointInfo(name=c.name, family=c.family, inpaint=c.inpaint, has_vae=c.has_vae)
            for c in inventory.checkpoints
        ],
        controlnets=[
            ControlNetInfo(name=c.name, family=c.family, type=c.type) for c in inventory.controlnets
        ],
        loras=[
            LoraInfo(name=lo.name, family=lo.family, format=lo.format, problem=lo.problem)
            for lo in inventory.loras
        ],
        vaes=[VaeInfo(name=v.name, family=v.family, problem=v.problem) for v in inventory.vaes],
        samplers=list(engine.samplers()),
        preprocessors=list(engine.preprocessors()),
    )
