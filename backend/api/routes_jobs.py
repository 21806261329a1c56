"""The job routes: create, inspect, follow (SSE), fetch results and previews, cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import ValidationError

from backend.api.clients import client_id
from backend.api.context import ApiContext, get_context
from backend.api.convert import build_request, inventory_names
from backend.api.errors import (
    NotFound,
    QueueFull,
    Unprocessable,
    from_engine_error,
    validation_error,
)
from backend.api.images import IMAGE_CONTENT_TYPES, raw_response
from backend.api.multipart import Part, read_parts
from backend.api.routes_styles import get_styles, resolve_style
from backend.api.sse import event_stream
from backend.engine.errors import EngineError
from backend.events import Event
from backend.jobs import Job, JobsError
from backend.protocol import (
    PNG,
    RAW_BGRA,
    ErrorResponse,
    JobCreated,
    JobInfo,
    JobParams,
    ProgressEvent,
    ResultInfo,
)
from backend.style_resolve import attach as attach_style

router = APIRouter(prefix="/v1", tags=["jobs"])

_IMAGE_PART = {"type": "string", "format": "binary"}
JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["params"],
                    "properties": {
                        "params": {"$ref": "#/components/schemas/JobParams"},
                        "image": _IMAGE_PART,
                        "mask": _IMAGE_PART,
                    },
                    "patternProperties": {"^control_[0-9]{1,2}$": _IMAGE_PART},
                },
                "encoding": {
                    "params": {"contentType": "application/json"},
                    "image": {"contentType": IMAGE_CONTENT_TYPES},
                    "mask": {"contentType": IMAGE_CONTENT_TYPES},
                },
            }
        },
    }
}
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 503)}


def parse_params(parts: dict[str, Part], model: type):
    """The ``params`` JSON part validated as ``model`` (422 naming the field on failure)."""
    part = parts.get("params")
    if part is None:
        raise Unprocessable("params: the multipart 'params' JSON part is missing", field="params")
    try:
        return model.model_validate_json(part.data)
    except ValidationError as exc:
        raise validation_error(exc, prefix="") from exc


def get_job(ctx: ApiContext, job_id: str) -> Job:
    job = ctx.queue.get(job_id)
    if job is None:
        raise NotFound(f"job {job_id[:40]!r} not found (unknown or expired)", field="id")
    return job


def result_info(job: Job, index: int) -> ResultInfo:
    result = job.results[index]
    base = f"/v1/jobs/{job.id}/results/{index}"
    return ResultInfo(
        index=index,
        seed=result.seed,
        x=result.x,
        y=result.y,
        width=result.width,
        height=result.height,
        url=f"{base}.png",
        raw_url=f"{base}.raw",
        file=str(result.path),
        # mode "layers": the job's layers form one group, bottom first
        group=job.id if result.layer_index is not None else None,
        layer_index=result.layer_index,
        composite_error=result.composite_error,
    )


def job_info(ctx: ApiContext, job: Job) -> JobInfo:
    return JobInfo(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        mode=job.mode,  # type: ignore[arg-type]
        step=job.step,
        total_steps=job.total_steps,
        queue_position=ctx.queue.position(job),
        error=job.error,
        results=[result_info(job, i) for i in range(len(job.results))],
        preview_url=f"/v1/jobs/{job.id}/preview.png" if job.preview_png else None,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post(
    "/jobs", status_code=202, response_model=JobCreated, openapi_extra=JOB_BODY, responses=ERRORS
)
async def create_job(request: Request, ctx: ApiContext = Depends(get_context)) -> JobCreated:
    # 1. Read the body (bounded) and validate the params part.
    parts = await read_parts(request, ctx.settings.max_request_bytes)
    params: JobParams = parse_params(parts, JobParams)
    # 2. Decode images and check the request with the engine before queueing (off the loop).
    engine = ctx.engine

    styles = get_styles(request)

    def prepare():
        inventory = engine.inventory()
        known = inventory_names(inventory)
        # The style fills what the request leaves out (backend/style_resolve.py).
        resolved, outcome = resolve_style(params, styles, inventory)
        built = build_request(resolved, parts, ctx.settings.max_image_pixels, known)
        attach_style(built, params, outcome)
        engine.check_request(built)
        return built

    try:
        generation = await asyncio.to_thread(prepare)
    except EngineError as exc:
        raise from_engine_error(exc) from exc
    # 3. Queue it.
    try:
        job = ctx.queue.submit(generation, client_id(request))
    except JobsError as exc:
        raise QueueFull(str(exc), code=getattr(exc, "code", "queue_full")) from exc
    position = ctx.queue.position(job)
    return JobCreated(id=job.id, state="queued", queue_position=position or 0)


@router.get("/jobs/{job_id}", response_model=JobInfo, responses=ERRORS)
async def get_job_info(job_id: str, ctx: ApiContext = Depends(get_context)) -> JobInfo:
    # Off the loop: with `serve --cluster` the lookup is a call to the shared job registry.
    return job_info(ctx, await asyncio.to_thread(get_job, ctx, job_id))


@router.delete("/jobs/{job_id}", response_model=JobInfo, responses=ERRORS)
async def cancel_job(job_id: str, ctx: ApiContext = Depends(get_context)) -> JobInfo:
    job = ctx.queue.cancel(job_id)
    if job is None:
        raise NotFound(f"job {job_id[:40]!r} not found (unknown or expired)", field="id")
    return job_info(ctx, job)


@router.get(
    "/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    response_class=StreamingResponse,
)
async def job_events(
    job_id: str, request: Request, ctx: ApiContext = Depends(get_context)
) -> StreamingResponse:
    job = await asyncio.to_thread(get_job, ctx, job_id)
    last = request.headers.get("last-event-id", "0")
    after = int(last) if last.isdigit() else 0

    def render(event: Event) -> dict:
        if event.name == "progress":
            return ProgressEvent.model_validate(event.data).model_dump()
        if event.name == "result":
            return result_info(job, event.data["index"]).model_dump()
        if event.name == "queued":
            return {**event.data, "queue_position": ctx.queue.position(job) or 0}
        if event.name in ("done", "failed", "cancelled"):
            return job_info(ctx, job).model_dump()
        return dict(event.data)

    stream = event_stream(job.events, render, ctx.settings.keepalive_s, after)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


def _result(ctx: ApiContext, job_id: str, index: int):
    job = get_job(ctx, job_id)
    if not (0 <= index < len(job.results)):
        raise NotFound(f"job {job.id} has no result {index} (state {job.state})", field="index")
    return job.results[index]


@router.get(
    "/jobs/{job_id}/results/{index}.png",
    response_class=FileResponse,
    responses={200: {"content": {PNG: {}}}, **ERRORS},
)
async def result_png(job_id: str, index: int, ctx: ApiContext = Depends(get_context)):
    result = _result(ctx, job_id, index)

    # The file's final bytes: after the output writer's compaction of it (see outputs.py),
    # read in one go (a FileResponse's stat and open could straddle a replacement).
    def read_final() -> bytes:
        ctx.queue.writer.wait_compacted(30.0, result.path)
        return result.path.read_bytes()

    try:
        data = await asyncio.to_thread(read_final)
    except OSError:
        raise NotFound(
            f"result file {result.path.name} is no longer on disk", field="index"
        ) from None
    return Response(data, media_type=PNG)


@router.get(
    "/jobs/{job_id}/results/{index}.raw",
    responses={200: {"content": {RAW_BGRA: {}}}, **ERRORS},
)
async def result_raw(job_id: str, index: int, ctx: ApiContext = Depends(get_context)) -> Response:
    result = _result(ctx, job_id, index)
    return raw_response(result.raw, result.width, result.height)


@router.get("/jobs/{job_id}/preview.png", responses={200: {"content": {PNG: {}}}, **ERRORS})
async def preview_png(job_id: str, ctx: ApiContext = Depends(get_context)) -> Response:
    job = get_job(ctx, job_id)
    preview = job.preview_png
    if preview is None:
        raise NotFound(f"job {job.id} has no preview yet", field="id")
    return Response(preview, media_type=PNG, headers={"Cache-Control": "no-store"})
