"""Download one file over HTTP(S) safely: resume, verify, then rename into place.

Standard library only (urllib), so the server extra stays lean. The procedure:

1. Bytes go to ``NAME.part`` next to the destination; nothing is ever written under ``NAME``
   until the whole file is there and verified.
2. An interrupted transfer (dropped connection, short read, time-out) is retried, asking for
   the rest with an HTTP ``Range`` header; a server that ignores Range restarts the file.
3. The result is checked against a SHA-256: the pinned one when the caller has it, otherwise the
   one the Hugging Face Hub publishes for LFS files (``X-Linked-Etag`` / ``ETag`` of the resolve
   URL). A mismatch deletes the partial file and raises :class:`HashMismatch`.
4. ``NAME.part`` is renamed to ``NAME`` (atomic on one file system).

A Hugging Face token (env ``HF_TOKEN``) is sent to the first host only, never to the CDN a
resolve URL redirects to.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TOKEN_ENV = "HF_TOKEN"
USER_AGENT = "diffusion-layers-downloader/1"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(Exception):
    """Base of the downloader's errors; the message is meant for the artist."""


class NetworkUnavailable(DownloadError):
    """The host could not be reached at all (no network, DNS failure, refused, time-out)."""


class RemoteFileError(DownloadError):
    """The server answered with an error (not found, gated without a token, ...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HashMismatch(DownloadError):
    """The downloaded bytes do not have the expected SHA-256; nothing was kept."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


@dataclass
class DownloadProgress:
    name: str
    done: int  # bytes on disk so far (including a resumed prefix)
    total: int | None  # None when the server did not say
    resumed_from: int = 0  # bytes already there when the current attempt started


ProgressCallback = Callable[[DownloadProgress], None]


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int
    verified_against: str | None  # "pinned" | "hub-etag" | None (no reference hash known)
    attempts: int
    resumed: bool
    skipped: bool = False  # already present and verified: nothing was downloaded


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_sha256(headers: list[http.client.HTTPMessage]) -> str | None:
    """The SHA-256 the Hub publishes for an LFS file, from the first header set that has it.

    ``X-Linked-Etag`` (sent with the resolve URL's redirect) wins over a plain ``ETag``; a
    value that is not 64 hex digits (a git blob SHA-1, a weak tag) is no SHA-256 and ignored.
    """
    for name in ("X-Linked-Etag", "ETag"):
        for header_set in headers:
            value = header_set.get(name)
            if not value:
                continue
            value = value.strip()
            value = value[2:] if value.startswith("W/") else value
            value = value.strip('"').lower()
            if SHA256_RE.match(value):
                return value
    return None


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, remembers each hop's headers, drops the token on a host change."""

    def __init__(self) -> None:
        self.hops: list[http.client.HTTPMessage] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        self.hops.append(headers)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).hostname
            if urllib.parse.urlsplit(newurl).hostname != old_host:
                new.remove_header("Authorization")
        return new


def check_inputs(url: str, dest: Path, sha256: str | None, retries: int) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise DownloadError(f"url={url!r}: only http and https URLs can be downloaded")
    if sha256 is not None and not SHA256_RE.match(sha256):
        raise DownloadError(f"sha256={sha256!r}: expected 64 lowercase hex digits")
    if retries < 0:
        raise DownloadError(f"retries={retries!r}: must be >= 0")
    if dest.exists() and dest.is_dir():
        raise DownloadError(f"dest={str(dest)!r}: is a folder")


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range")  # "bytes 100-199/200"
    if response.status == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (offset if response.status == 206 else 0)
    return None


def _range_start(response: http.client.HTTPResponse) -> int:
    match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else -1


def _copy(
    response: IO[bytes], out: IO[bytes], progress: DownloadProgress, report: ProgressCallback
) -> None:
    while True:
        block = response.read(1 << 20)
        if not block:
            return
        out.write(block)
        progress.done += len(block)
        report(progress)


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    token: str | None = None,
    on_progress: ProgressCallback | None = None,
    retries: int = 5,
    retry_wait_s: float = 2.0,
    timeout_s: float = 60.0,
    force: bool = False,
) -> DownloadResult:
    """Download ``url`` to ``dest`` (see the module docstring for the procedure).

    Raises NetworkUnavailable, RemoteFileError, HashMismatch or DownloadError; on any of them
    ``dest`` is untouched and only a resumable ``dest.part`` may remain (never after a hash
    mismatch).
    """
    target = Path(dest)
    check_inputs(url, target, sha256, retries)
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    report = on_progress or (lambda _progress: None)
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)

    # 1. Already there and matching the pinned hash: nothing to do.
    if target.is_file() and not force and sha256 is not None and sha256_file(target) == sha256:
        size = target.stat().st_size
        return DownloadResult(target, sha256, size, "pinned", 0, False, skipped=True)

    hops: list[http.client.HTTPMessage] = []
    attempts = 0
    resumed = False
    last_error: BaseException | None = None
    while True:
        # 2. One attempt: ask for what is missing, append it to the .part file.
        attempts += 1
        offset = part.stat().st_size if part.exists() else 0
        redirects = _RecordingRedirects()
        opener = urllib.request.build_opener(redirects)
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with opener.open(request, timeout=timeout_s) as response:
                hops = [*redirects.hops, response.headers]
                if offset and response.status == 206 and _range_start(response) == offset:
                    resumed = True
                else:
                    offset = 0  # the server sent the whole file
                total = _total_size(response, offset)
                progress = DownloadProgress(target.name, offset, total, offset)
                report(progress)
                with open(part, "ab" if offset else "wb") as out:
                    _copy(response, out, progress, report)
            size = part.stat().st_size
            if total is None or size == total:
                break
            if size > total:
                part.unlink()
                raise DownloadError(f"{url}: got {size} bytes, more than the {total} announced")
            last_error = DownloadError(f"connection closed after {size} of {total} bytes")
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and part.exists():  # nothing left to send: .part is complete
                hops = [*redirects.hops, exc.headers]
                break
            raise _http_error(url, exc) from exc
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
        ) as exc:
            last_error = exc
        have = part.stat().st_size if part.exists() else 0
        never_connected = have == 0 and isinstance(last_error, urllib.error.URLError)
        if attempts > retries or (never_connected and attempts >= 2):
            host = urllib.parse.urlsplit(url).hostname
            kept = f" {have} bytes are kept in {part}; the next try resumes there." if have else ""
            raise NetworkUnavailable(
                f"Could not download {url} ({attempts} attempt(s)): {_describe(last_error)}. "
                f"Is {host} reachable from this machine?{kept}"
            ) from last_error
        time.sleep(retry_wait_s)

    # 3. Verify against the pinned hash, else the Hub's published one.
    expected, source = (sha256, "pinned") if sha256 else (hub_sha256(hops), "hub-etag")
    actual = sha256_file(part)
    if expected is not None and actual != expected:
        part.unlink()
        raise HashMismatch(
            f"{target.name}: SHA-256 mismatch (expected {expected} from {source}, got {actual}); "
            f"the corrupted download was deleted, run the command again.",
            expected,
            actual,
        )
    # 4. Into place.
    os.replace(part, target)
    size = target.stat().st_size
    return DownloadResult(
        target, actual, size, source if expected else None, attempts, resumed, skipped=False
    )


def _http_error(url: str, exc: urllib.error.HTTPError) -> RemoteFileError:
    if exc.code in (401, 403):
        hint = (
            f"the repository may be gated or private: accept its licence on the Hub and set "
            f"{TOKEN_ENV} to an access token"
        )
    elif exc.code == 404:
        hint = "the file is not there (renamed or removed upstream?)"
    else:
        hint = "the server refused the request"
    return RemoteFileError(f"{url}: HTTP {exc.code} {exc.reason}: {hint}", exc.code)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


class TerminalProgressBar:
    """A progress callback drawing ``name [#####.....] 42% 1.2/2.1 GiB 35.0 MiB/s`` on stderr.

    Redraws at most ``min_interval_s`` apart (and always at 100%); on a non-terminal stream it
    prints a plain line every 10% instead, so logs stay readable.
    """

    def __init__(
        self, stream: IO[str] | None = None, width: int = 30, min_interval_s: float = 0.2
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval_s = min_interval_s
        self._last_draw = 0.0
        self._last_tenth = -1
        self._start = time.monotonic()
        self._start_bytes: int | None = None

    def __call__(self, progress: DownloadProgress) -> None:
        now = time.monotonic()
        if self._start_bytes is None or progress.done < self._start_bytes:
            self._start, self._start_bytes = now, progress.done
        finished = progress.total is not None and progress.done >= progress.total
        speed = (progress.done - self._start_bytes) / max(now - self._start, 1e-6)
        if not self.stream.isatty():
            self._plain(progress, finished)
            return
        if not finished and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        self.stream.write("\r" + self.render(progress, speed) + ("\n" if finished else ""))
        self.stream.flush()

    def _plain(self, progress: DownloadProgress, finished: bool) -> None:
        if progress.total:
            tenth = min(10, progress.done * 10 // progress.total)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
        elif not finished:
            return
        self.stream.write(self.render(progress, None) + "\n")
        self.stream.flush()

    def render(self, progress: DownloadProgress, speed: float | None) -> str:
        done = format_bytes(progress.done)
        rate = f" {format_bytes(speed)}/s" if speed else ""
        if not progress.total:
            return f"{progress.name} {done}{rate}"
        fraction = min(1.0, progress.done / progress.total)
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        total = format_bytes(progress.total)
        return f"{progress.name} [{bar}] {fraction * 100:3.0f}% {done}/{total}{rate}"
