"""The engine's exception tree. Messages are written for the artist; details go to the log."""

from __future__ import annotations

from backend.fields import canonical_field, problem


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "engine_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = canonical_field(field)


class InvalidRequest(EngineError):
    """A parameter is out of range or inconsistent; names the parameter and its value."""

    code = "invalid_request"

    def __init__(self, field: str, value: object, reason: str) -> None:
        field = canonical_field(field) or field
        super().__init__(problem(field, reason, value), field=field)
        self.value = value
        self.reason = reason

    def at(self, prefix: str) -> InvalidRequest:
        """The same refusal with ``controls[]`` (a list item not yet known) spelt ``prefix``
        (``controls[1]``), for errors raised below the code that knows the index."""
        field = (self.field or "").replace("controls[]", prefix, 1) or prefix
        return InvalidRequest(field, self.value, self.reason)


class ModelNotFound(EngineError):
    code = "model_not_found"


class UnsafeModelFile(EngineError):
    """A pickle checkpoint (.ckpt/.pt/.bin) refused because pickle loading was not allowed."""

    code = "unsafe_model_file"


class ModelLoadError(EngineError):
    code = "model_load_failed"


class Cancelled(EngineError):
    code = "cancelled"

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class OutOfMemory(EngineError):
    code = "out_of_memory"
