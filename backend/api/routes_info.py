"""``GET /v1/health`` (version and capability handshake) and ``GET /v1/models``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from backend import __version__
from backend.api.context import ApiContext, get_context
from backend.engine import families
from backend.engine.types import CheckpointEntry
from backend.protocol import MODES, PROTOCOL_VERSION, Health
from backend.protocol_models import (
    CheckpointCapabilities,
    CheckpointInfo,
    ControlNetInfo,
    IPAdapterInfo,
    LoraInfo,
    ModelsInfo,
    UnusableModel,
    UpscalerInfo,
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
    "upscale",
    "hires",
    "styles",
    "prompt-syntax",
    "reference",
    "edit",
    "layers",
)

router = APIRouter(prefix="/v1", tags=["info"])


def checkpoint_capabilities(entry: CheckpointEntry) -> CheckpointCapabilities | None:
    """What the checkpoint's family supports (docs/protocol.md), limited to the modes this
    server runs; None for a family no module declares (the plugin then shows everything)."""
    if entry.family not in families.ids():
        return None
    capabilities = families.get(entry.family).capabilities()
    capabilities["modes"] = [mode for mode in capabilities["modes"] if mode in MODES]
    return CheckpointCapabilities.model_validate(capabilities)


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
        offload=getattr(ctx.engine, "offload", None),
    )


@router.get("/models", response_model=ModelsInfo)
async def models(ctx: ApiContext = Depends(get_context)) -> ModelsInfo:
    engine = ctx.engine
    # Listing may touch the disk: keep it off the event loop.
    inventory = await asyncio.to_thread(engine.inventory)
    return ModelsInfo(
        default=ctx.settings.default_model or engine.loaded_model,
        checkpoints=[
            CheckpointInfo(
                name=c.name,
                family=c.family,
                inpaint=c.inpaint,
                has_vae=c.has_vae,
                capabilities=checkpoint_capabilities(c),
            )
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
        unusable=[
            UnusableModel(kind=s.kind, name=s.name, problem=s.reason) for s in inventory.skipped
        ],
        upscalers=[
            UpscalerInfo(name=u.name, scale=u.scale, architecture=u.architecture, problem=u.problem)
            for u in inventory.upscalers
        ],
        ipadapters=[
            IPAdapterInfo(
                name=a.name,
                family=a.family,
                type=a.type,
                image_encoder=a.image_encoder,
                problem=a.problem,
            )
            for a in inventory.ipadapters
        ],
        samplers=list(engine.samplers()),
        preprocessors=list(engine.preprocessors()),
    )
