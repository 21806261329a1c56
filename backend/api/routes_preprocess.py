"""``POST /v1/preprocess``: a control map (canny, depth, ...) for 'preprocess to layer'."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from backend.api.context import ApiContext, get_context
from backend.api.convert import check_pixels
from backend.api.errors import Unprocessable
from backend.api.image_parts import region_size
from backend.api.images import IMAGE_CONTENT_TYPES, decode_image
from backend.api.multipart import read_parts
from backend.api.routes_jobs import ERRORS, parse_params
from backend.outputs import encode_png
from backend.protocol import PNG, PreprocessParams

router = APIRouter(prefix="/v1", tags=["preprocess"])

PREPROCESS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["params", "image"],
                    "properties": {
                        "params": {"$ref": "#/components/schemas/PreprocessParams"},
                        "image": {"type": "string", "format": "binary"},
                    },
                },
                "encoding": {
                    "params": {"contentType": "application/json"},
                    "image": {"contentType": IMAGE_CONTENT_TYPES},
                },
            }
        },
    }
}


@router.post(
    "/preprocess",
    openapi_extra=PREPROCESS_BODY,
    responses={200: {"content": {PNG: {}}}, **ERRORS},
    response_class=Response,
)
async def preprocess(request: Request, ctx: ApiContext = Depends(get_context)) -> Response:
    # 1. Read and validate.
    parts = await read_parts(request, ctx.settings.max_request_bytes)
    params: PreprocessParams = parse_params(parts, PreprocessParams)
    extra = sorted(set(parts) - {"params", "image"})
    if extra:
        raise Unprocessable(f"part {extra[0]!r}: not expected by /v1/preprocess", field=extra[0])
    if "image" not in parts:
        raise Unprocessable("image: the multipart 'image' part is missing", field="image")
    part = parts["image"]
    limit = ctx.settings.max_image_pixels
    size = region_size(params.width, params.height, "preprocess", part, limit)
    check_pixels(*size, limit)
    # 2. Decode and run the preprocessor in a worker thread, never on the event loop.
    image = await asyncio.to_thread(
        decode_image, part.data, part.content_type, "image", size, limit
    )
    control_map = await asyncio.to_thread(ctx.engine.preprocess, params.type, image)
    # 3. Answer with a PNG.
    data = await asyncio.to_thread(encode_png, control_map)
    return Response(data, media_type=PNG)
