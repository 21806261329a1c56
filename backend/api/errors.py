"""The API's exception tree and the handlers that turn every error into ``ErrorResponse`` JSON.

4xx for the client's mistakes, 5xx only for ours. Engine errors map as follows (docs/protocol.md):
InvalidRequest -> 422, ModelNotFound -> 404, UnsafeModelFile -> 403, anything else -> 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.engine import errors as engine_errors
from backend.fields import canonical_field, field_path, problem
from backend.protocol import ErrorInfo, ErrorResponse

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of every error the API raises on purpose: an HTTP status and an error code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = canonical_field(field)
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    status = 422
    code = "invalid_request"


class QueueFull(ApiError):
    status = 503
    code = "queue_full"


ENGINE_STATUS: dict[type[engine_errors.EngineError], int] = {
    engine_errors.InvalidRequest: 422,
    engine_errors.ModelNotFound: 404,
    engine_errors.UnsafeModelFile: 403,
}


def error_body(code: str, message: str, field: str | None = None) -> dict:
    info = ErrorInfo(code=code, message=message, field=canonical_field(field))
    return ErrorResponse(error=info).model_dump()


def error_response(status: int, code: str, message: str, field: str | None = None, **kw):
    return JSONResponse(error_body(code, message, field), status_code=status, **kw)


def from_engine_error(exc: engine_errors.EngineError) -> ApiError:
    """An engine error raised while checking a request, as the API error to answer with."""
    status = 500
    for cls, mapped in ENGINE_STATUS.items():
        if isinstance(exc, cls):
            status = mapped
            break
    err = ApiError(exc.message, field=exc.field, code=exc.code)
    err.status = status
    return err


#: pydantic error types whose message is one plain word after the field's path
_SHORT_MESSAGES = {"missing": "required", "extra_forbidden": "not a known parameter"}


def validation_error(exc: Exception, prefix: str = "") -> Unprocessable:
    """A pydantic/FastAPI validation error as one readable Unprocessable (first problem).

    ``field`` is the canonical path (``loras[0].name``); a missing field reads
    "width: required", never a dump of the object it is missing from."""
    errors = getattr(exc, "errors", lambda: [])()
    if not errors:
        return Unprocessable(f"{prefix}{exc}")
    first = errors[0]
    field = field_path(first.get("loc", ()))
    if field and prefix:
        field = prefix + field
    kind = first.get("type", "")
    if kind in _SHORT_MESSAGES:
        message = problem(field, _SHORT_MESSAGES[kind], show_value=False)
    else:
        message = problem(field, first.get("msg", "invalid value"), first.get("input"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return Unprocessable(message, field=field)


def install_handlers(app: FastAPI) -> None:
    """Make every error, including FastAPI's and Starlette's own, an ErrorResponse."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=headers)

    @app.exception_handler(engine_errors.EngineError)
    async def _engine_error(_request: Request, exc: engine_errors.EngineError) -> JSONResponse:
        err = from_engine_error(exc)
        if err.status >= 500:
            log.error("engine error: %s", exc, exc_info=exc)
        return error_response(err.status, err.code, err.message, err.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, err.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error (see server log)")
