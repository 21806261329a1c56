"""Live painting routes: post a frame, get the rendering back in the same answer; end a session.

``POST /v1/live/{session}/frames`` takes the same multipart body as ``/v1/jobs`` (a ``params``
part, here ``LiveParams``, an ``image`` part and ``control_N`` parts) and answers with the
rendered frame itself: raw BGRA8 (default) or PNG when ``Accept`` asks for ``image/png`` only.
A frame replaced by a newer one of the same session before it ran is answered 409
``superseded`` at once. See docs/live.md.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from backend.api.context import ApiContext, get_context
from backend.api.convert import build_request, inventory_names
from backend.api.errors import ApiError, NotFound, Unprocessable, from_engine_error
from backend.api.multipart import read_parts
from backend.api.routes_jobs import ERRORS, JOB_BODY, parse_params
from backend.api.routes_styles import get_styles, resolve_style
from backend.engine.edit_checks import check_live_edit
from backend.engine.errors import EngineError
from backend.engine.types import GenerationRequest
from backend.live import LiveError, LiveFrame, LiveSessions
from backend.live_presets import resolve_sampling
from backend.outputs import encode_png, rgba_to_bgra_bytes
from backend.protocol import (
    LIVE_SESSION_PATTERN,
    PNG,
    RAW_BGRA,
    ErrorResponse,
    JobParams,
    LiveParams,
    LiveSessionInfo,
)
from backend.style_resolve import attach as attach_style

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/live", tags=["live"])

SESSION = Path(pattern=LIVE_SESSION_PATTERN, description="the document's id")
LIVE_BODY = {
    "requestBody": {
        **JOB_BODY["requestBody"],
        "content": {
            "multipart/form-data": {
                **JOB_BODY["requestBody"]["content"]["multipart/form-data"],
                "schema": {
                    **JOB_BODY["requestBody"]["content"]["multipart/form-data"]["schema"],
                    "required": ["params", "image"],
                    "properties": {
                        "params": {"$ref": "#/components/schemas/LiveParams"},
                        "image": {"type": "string", "format": "binary"},
                    },
                },
            }
        },
    }
}
FRAME_HEADERS = {
    "X-Width": "frame width",
    "X-Height": "frame height",
    "X-Offset-X": "frame offset inside the region",
    "X-Offset-Y": "frame offset inside the region",
    "X-Seed": "the session's seed",
    "X-Frame": "frame number in the session",
    "X-Render-Ms": "time on the GPU",
    "X-Wait-Ms": "time waiting for the GPU",
    "X-Sampler": "sampler used",
    "X-Steps": "steps used",
    "X-Cfg-Scale": "CFG used",
}
FRAME_RESPONSES = {
    200: {
        "content": {RAW_BGRA: {}, PNG: {}},
        "headers": {name: {"description": text} for name, text in FRAME_HEADERS.items()},
    },
    409: {"model": ErrorResponse, "description": "superseded by a newer frame, or closed"},
    **ERRORS,
}


class LiveApiError(ApiError):
    """A ``LiveError`` as an HTTP answer."""

    def __init__(self, exc: LiveError) -> None:
        super().__init__(str(exc), code=exc.code)
        self.status = exc.status


def get_live(request: Request) -> LiveSessions:
    return request.app.state.live


def job_params(params: LiveParams) -> tuple[JobParams, str]:
    """The img2img ``JobParams`` of one live frame (presets filled in) and the preset name."""
    sampling = resolve_sampling(
        params.model,
        [lora.name for lora in params.loras],
        params.sampler,
        params.steps,
        params.cfg_scale,
    )
    job = JobParams(
        mode="edit" if params.edit else "img2img",
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        model=params.model,
        vae=params.vae,
        width=params.width,
        height=params.height,
        x=params.x,
        y=params.y,
        strength=params.strength,
        steps=sampling.steps,
        cfg_scale=sampling.cfg_scale,
        sampler=sampling.sampler,
        seed=0,  # replaced by the session's seed
        clip_skip=params.clip_skip,
        controls=params.controls,
        loras=params.loras,
    )
    return job, sampling.preset


def wants_png(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return PNG in accept and RAW_BGRA not in accept


def frame_headers(frame: LiveFrame, request: GenerationRequest) -> dict[str, str]:
    height, width = frame.image.shape[:2]
    return {
        "X-Width": str(width),
        "X-Height": str(height),
        "X-Offset-X": str(frame.x),
        "X-Offset-Y": str(frame.y),
        "X-Seed": str(frame.seed),
        "X-Frame": str(frame.number),
        "X-Render-Ms": f"{frame.render_ms:.1f}",
        "X-Wait-Ms": f"{frame.wait_ms:.1f}",
        "X-Sampler": request.sampler,
        "X-Steps": str(request.steps),
        "X-Cfg-Scale": f"{request.cfg_scale:g}",
        "Cache-Control": "no-store",
    }


@router.post(
    "/{session}/frames",
    openapi_extra=LIVE_BODY,
    responses=FRAME_RESPONSES,
    response_class=Response,
)
async def live_frame(
    request: Request,
    session: str = SESSION,
    ctx: ApiContext = Depends(get_context),
    live: LiveSessions = Depends(get_live),
) -> Response:
    # 1. Read the body (bounded) and validate the params part.
    parts = await read_parts(request, ctx.settings.max_request_bytes)
    params: LiveParams = parse_params(parts, LiveParams)
    if "mask" in parts:
        raise Unprocessable("part 'mask': live frames take no mask", field="mask")
    engine = ctx.engine
    styles = get_styles(request)

    # 2. Decode and check like a job (off the event loop); the image part is required. The
    #    style fills what the frame leaves out (its live sampler and steps).
    def prepare() -> GenerationRequest:
        inventory = engine.inventory()
        known = inventory_names(inventory)
        resolved, outcome = resolve_style(params, styles, inventory, live=True)
        job, _preset = job_params(resolved)
        built = build_request(job, parts, ctx.settings.max_image_pixels, known)
        attach_style(built, params, outcome)
        if params.edit:  # only on a checkpoint fast enough to edit live
            default = getattr(engine, "default_model", lambda: None)()
            check_live_edit(built, inventory, default)
        engine.check_request(built)
        return built

    try:
        generation = await asyncio.to_thread(prepare)
    except EngineError as exc:
        raise from_engine_error(exc) from exc
    # 3. Into the session's mailbox; wait for the worker (or for a newer frame to win).
    seed = None if params.seed == -1 else params.seed
    try:
        frame: LiveFrame = await asyncio.wrap_future(live.submit(session, generation, seed))
    except LiveError as exc:
        raise LiveApiError(exc) from exc
    except EngineError as exc:
        raise from_engine_error(exc) from exc
    # 4. Optional recording, then the frame itself.
    if params.record:
        try:
            await asyncio.to_thread(live.record, frame)
        except OSError as exc:
            log.error("live %s: recording frame %d failed: %s", session, frame.number, exc)
    headers = frame_headers(frame, generation)
    if wants_png(request):
        data = await asyncio.to_thread(encode_png, frame.image)
        return Response(data, media_type=PNG, headers=headers)
    return Response(rgba_to_bgra_bytes(frame.image), media_type=RAW_BGRA, headers=headers)


@router.get("/{session}", response_model=LiveSessionInfo, responses=ERRORS)
async def live_info(
    session: str = SESSION, live: LiveSessions = Depends(get_live)
) -> LiveSessionInfo:
    info = live.info(session)
    if info is None:
        raise NotFound(f"live session {session!r} is not open", field="session")
    return info


@router.delete("/{session}", response_model=LiveSessionInfo, responses=ERRORS)
async def live_close(
    session: str = SESSION, live: LiveSessions = Depends(get_live)
) -> LiveSessionInfo:
    info = live.close(session)
    if info is None:
        raise NotFound(f"live session {session!r} is not open", field="session")
    return info
