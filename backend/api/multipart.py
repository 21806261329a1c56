"""Read a ``multipart/form-data`` body into named parts, keeping each part's Content-Type.

Starlette's form parser drops the Content-Type of parts without a filename and decodes them
as text; the raw image codecs need both the bytes and the type, so this module streams the
body through python-multipart itself, counting bytes against the request limit as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.requests import Request

from backend.api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_PARTS = 32
MAX_NAME = 64


@dataclass
class Part:
    name: str
    content_type: str
    filename: str | None = None
    chunks: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class _Collector:
    """python-multipart callbacks that assemble Part objects."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self.error: Exception | None = None
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._current: Part | None = None

    def on_part_begin(self) -> None:
        self._headers = {}
        self._current = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field = b""
        self._value = b""

    def on_headers_finished(self) -> None:
        _kind, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name or len(name) > MAX_NAME:
            raise _PartError(BadRequest(f"multipart part name {name[:MAX_NAME]!r} is invalid"))
        if name in self.parts:
            raise _PartError(BadRequest(f"multipart part {name!r} appears twice", field=name))
        if len(self.parts) >= MAX_PARTS:
            raise _PartError(BadRequest(f"more than {MAX_PARTS} multipart parts"))
        filename = options.get(b"filename")
        ctype = self._headers.get("content-type", "text/plain")
        self._current = Part(name, ctype, filename.decode("utf-8", "replace") if filename else None)
        self.parts[name] = self._current

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.chunks.append(bytes(data[start:end]))

    def on_part_end(self) -> None:
        self._current = None


class _PartError(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def read_parts(request: Request, max_bytes: int) -> dict[str, Part]:
    """All parts of the request body by name. Raises 400/413/415 ApiErrors."""
    # 1. The Content-Type must be multipart with a boundary.
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type {request.headers.get('content-type', '')!r}: expected multipart/form-data"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary")
    # 2. Refuse early when the declared length is already too large.
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the {max_bytes} limit")
    # 3. Stream the body through the parser, counting bytes.
    collector = _Collector()
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"request body is over the {max_bytes} byte limit")
            parser.write(chunk)
        parser.finalize()
    except _PartError as exc:
        raise exc.error from None
    except MultipartParseError as exc:
        raise BadRequest(f"malformed multipart body ({exc})") from exc
    return collector.parts
