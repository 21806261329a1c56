"""``/v1/styles``: list, read, save and delete styles (backend/styles.py keeps them).

Writes need the server's token like every other route. Built-in styles are read-only (409);
an unknown name is 404; a name that is not a style name is 422 before any path is made.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from backend.api.context import ApiContext, get_context
from backend.api.errors import ApiError
from backend.engine.types import Inventory
from backend.protocol import ErrorResponse, Style, StylesList
from backend.style_resolve import P, resolve
from backend.styles import StyleError, StyleStore

router = APIRouter(prefix="/v1", tags=["styles"])
ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 500)}


class StyleApiError(ApiError):
    """A ``StyleError`` as an HTTP answer."""

    def __init__(self, exc: StyleError) -> None:
        super().__init__(exc.message, field=exc.field, code=exc.code)
        self.status = exc.status


def get_styles(request: Request) -> StyleStore:
    return request.app.state.styles


async def _run(function, *args):
    """A store call off the event loop (it reads files), its errors as HTTP answers."""
    try:
        return await asyncio.to_thread(function, *args)
    except StyleError as exc:
        raise StyleApiError(exc) from exc


@router.get("/styles", response_model=StylesList, responses=ERRORS)
async def list_styles(
    ctx: ApiContext = Depends(get_context), store: StyleStore = Depends(get_styles)
) -> StylesList:
    inventory = await asyncio.to_thread(ctx.engine.inventory)
    return StylesList(styles=await _run(store.list, inventory))


@router.get("/styles/{name}", response_model=Style, responses=ERRORS)
async def get_style(
    name: str, ctx: ApiContext = Depends(get_context), store: StyleStore = Depends(get_styles)
) -> Style:
    inventory = await asyncio.to_thread(ctx.engine.inventory)
    return await _run(store.get, name, inventory)


@router.put("/styles/{name}", response_model=Style, responses=ERRORS)
async def put_style(
    name: str,
    style: Style,
    ctx: ApiContext = Depends(get_context),
    store: StyleStore = Depends(get_styles),
) -> Style:
    inventory = await asyncio.to_thread(ctx.engine.inventory)
    return await _run(store.put, name, style, inventory)


@router.delete("/styles/{name}", status_code=204, response_class=Response, responses=ERRORS)
async def delete_style(
    name: str, ctx: ApiContext = Depends(get_context), store: StyleStore = Depends(get_styles)
) -> Response:
    inventory = await asyncio.to_thread(ctx.engine.inventory)
    await _run(store.delete, name, inventory)
    return Response(status_code=204)


def resolve_style(params: P, store: StyleStore, inventory: Inventory, *, live: bool = False):
    """``style_resolve.resolve`` with its errors as HTTP answers (422 on ``style``)."""
    try:
        return resolve(params, store, inventory, live=live)
    except StyleError as exc:
        raise StyleApiError(exc) from exc
