"""Read a ``multipart/form-data`` body into named parts, keeping each part's Content-Type.

Starlette's form parser drops the Content-Type of parts without a filename and decodes them
as text; the raw image codecs need both the bytes and the type. A 2048² raw BGRA part is 16 MiB,
and a byte-level state machine in Python (python-multipart) spends about half a second on it,
so this module does it the other way: the body is streamed into one ``bytearray`` (counted
against the request limit as it arrives), then split with ``bytes.find`` on the boundary,
which runs at memory speed. Each ``Part`` is a ``memoryview`` into that buffer: no part's
bytes are copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from backend.api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_PARTS = 32
MAX_NAME = 64
MAX_HEADER_BYTES = 16 * 1024  # one part's header block
CRLF = b"\r\n"


@dataclass
class Part:
    name: str
    content_type: str
    filename: str | None = None
    view: memoryview = field(default_factory=lambda: memoryview(b""))

    @property
    def data(self) -> bytes:
        """A copy of the part's bytes (``view`` is the zero-copy way)."""
        return self.view.tobytes()

    @property
    def size(self) -> int:
        return self.view.nbytes


def check_content_type(header: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type (415 / 400 otherwise)."""
    ctype, options = parse_options_header(header)
    if ctype != b"multipart/form-data":
        raise UnsupportedMediaType(f"Content-Type {header!r}: expected multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary")
    if len(boundary) > 200:
        raise BadRequest(f"multipart boundary of {len(boundary)} bytes is over 200")
    return boundary


async def read_body(request: Request, max_bytes: int) -> bytearray:
    """The whole body in one buffer, refused (413) as soon as it passes ``max_bytes``."""
    # 1. Refuse early when the declared length is already too large.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the {max_bytes} limit")
    # 2. Append the chunks as they arrive. Growing a bytearray is amortised (and large ones
    #    grow by remapping pages): faster than preallocating from Content-Length (measured),
    #    and a client that declares a large body but sends little does not commit memory.
    buffer = bytearray()
    async for chunk in request.stream():
        if len(buffer) + len(chunk) > max_bytes:
            raise PayloadTooLarge(f"request body is over the {max_bytes} byte limit")
        buffer += chunk
    return buffer


def _headers(block: memoryview) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.tobytes().split(CRLF):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise BadRequest(f"malformed multipart part header {line[:80]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def _new_part(headers: dict[str, str], parts: dict[str, Part], view: memoryview) -> Part:
    _kind, options = parse_options_header(headers.get("content-disposition", ""))
    name = options.get(b"name", b"").decode("utf-8", "replace")
    if not name or len(name) > MAX_NAME:
        raise BadRequest(f"multipart part name {name[:MAX_NAME]!r} is invalid")
    if name in parts:
        raise BadRequest(f"multipart part {name!r} appears twice", field=name)
    if len(parts) >= MAX_PARTS:
        raise BadRequest(f"more than {MAX_PARTS} multipart parts")
    filename = options.get(b"filename")
    ctype = headers.get("content-type", "text/plain")
    return Part(name, ctype, filename.decode("utf-8", "replace") if filename else None, view)


def split_parts(body: bytearray | bytes, boundary: bytes) -> dict[str, Part]:
    """Split a complete multipart body into parts (400 BadRequest when malformed)."""
    delimiter = b"--" + boundary
    view = memoryview(body)
    parts: dict[str, Part] = {}
    # 1. The first delimiter: at the start, or after a preamble ending in CRLF.
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:
        first = body.find(CRLF + delimiter)
        if first < 0:
            raise BadRequest("malformed multipart body (no opening boundary)")
        pos = first + 2 + len(delimiter)
    separator = CRLF + delimiter
    while True:
        # 2. After a delimiter: "--" closes the body, CRLF (maybe after blanks) opens a part.
        if body[pos : pos + 2] == b"--":
            return parts
        line_end = body.find(CRLF, pos, pos + 256)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise BadRequest("malformed multipart body (bad boundary line or truncated)")
        # 3. The part's headers, up to the blank line.
        head_start = line_end + 2
        if body.startswith(CRLF, head_start):
            head_end, data_start = head_start, head_start + 2
        else:
            head_end = body.find(CRLF + CRLF, head_start, head_start + MAX_HEADER_BYTES)
            if head_end < 0:
                raise BadRequest("malformed multipart body (part headers unterminated or huge)")
            data_start = head_end + 4
        headers = _headers(view[head_start:head_end])
        # 4. The data, up to CRLF + delimiter (memory-speed search, no copy).
        data_end = body.find(separator, data_start)
        if data_end < 0:
            raise BadRequest("malformed multipart body (truncated: no closing boundary)")
        part = _new_part(headers, parts, view[data_start:data_end])
        parts[part.name] = part
        pos = data_end + len(separator)


async def read_parts(request: Request, max_bytes: int) -> dict[str, Part]:
    """All parts of the request body by name. Raises 400/413/415 ApiErrors."""
    boundary = check_content_type(request.headers.get("content-type", ""))
    body = await read_body(request, max_bytes)
    return split_parts(body, boundary)
