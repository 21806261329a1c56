"""HTTP client for the v1 API through QNetworkAccessManager: asynchronous, never blocking.

Every call takes ``on_ok``/``on_error`` callbacks that run on the Qt event loop. Timeouts are
QTimers that abort the reply; health checks retry; a job is watched over Server-Sent Events and
falls back to polling ``GET /v1/jobs/{id}`` when the stream fails or goes quiet.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional
from urllib.parse import quote

from .errors import BackendError, ModelMissing, PluginError, server_down
from .protocol import (
    ErrorResponse,
    Health,
    JobCreated,
    JobInfo,
    ModelsInfo,
    ProgressEvent,
    ProtocolError,
    Style,
    StylesList,
)
from .qt import (
    QByteArray,
    QHttpMultiPart,
    QHttpPart,
    QNetworkAccessManager,
    QNetworkReply,
    QNetworkRequest,
    QObject,
    QTimer,
    QUrl,
)
from .raw_fetch import RawReceiver, size_of
from .request import Part

if TYPE_CHECKING:
    from .job_watch import JobWatch, RetryPolicy

log = logging.getLogger(__name__)

OnError = Callable[[PluginError], None]
OnBytes = Callable[[bytes, QNetworkReply], None]
DEFAULT_TIMEOUT_MS = 15000
UPLOAD_TIMEOUT_MS = 120000
HEALTH_RETRIES = 2
RETRY_DELAY_MS = 400


@dataclass
class _Pending:
    """One request in flight: its reply, timeout timer and callbacks."""

    reply: QNetworkReply
    timer: QTimer
    on_ok: OnBytes
    on_error: OnError
    timeout_ms: int


class Client(QObject):
    def __init__(
        self,
        base_url: str,
        token: str = "",
        parent: Optional[QObject] = None,
        client_id: str = "",
    ) -> None:
        """``client_id``: sent as ``X-Client-Id`` on every request ("" = none): this Krita
        installation's own lane in the server's fair queue when the server tells clients apart
        by address only (loopback, no tokens file; ``settings.installation_id``)."""
        super().__init__(parent)
        self._network = QNetworkAccessManager(self)
        self._pending: Dict[int, _Pending] = {}
        self._timers: Dict[int, int] = {}
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client_id = client_id
        # Per-request deadlines (a QTimer aborts the reply; nothing ever blocks the UI thread).
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self.upload_timeout_ms = UPLOAD_TIMEOUT_MS
        # How a job watch rides out dropped connections (None: job_watch.RetryPolicy()).
        self.retry_policy: Optional["RetryPolicy"] = None

    def configure(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    # -- plain requests -------------------------------------------------------------------

    def url(self, path: str) -> QUrl:
        """Absolute URL for an API path or a URL the server returned (relative or absolute)."""
        return QUrl(self.base_url + "/").resolved(QUrl(path))

    def _request(self, path: str) -> QNetworkRequest:
        request = QNetworkRequest(self.url(path))
        if self.token:
            request.setRawHeader(b"Authorization", b"Bearer " + self.token.encode("utf-8"))
        if self.client_id:
            request.setRawHeader(b"X-Client-Id", self.client_id.encode("ascii", "replace"))
        # Never follow redirects (Qt 6 follows safe ones by default; FollowRedirectsAttribute
        # is gone there): a 3xx is an answer like any other, on both bindings.
        request.setAttribute(
            QNetworkRequest.Attribute.RedirectPolicyAttribute,
            QNetworkRequest.RedirectPolicy.ManualRedirectPolicy,
        )
        return request

    def _send(
        self,
        method: str,
        path: str,
        on_ok: OnBytes,
        on_error: OnError,
        body: Optional[QHttpMultiPart] = None,
        timeout_ms: Optional[int] = None,
        data: bytes = b"",
    ) -> QNetworkReply:
        if timeout_ms is None:
            timeout_ms = self.timeout_ms
        request = self._request(path)
        if method == "GET":
            reply = self._network.get(request)
        elif method == "DELETE":
            reply = self._network.deleteResource(request)
        elif method == "PUT":  # a JSON body (styles)
            request.setHeader(QNetworkRequest.KnownHeaders.ContentTypeHeader, "application/json")
            reply = self._network.put(request, QByteArray(data))
        elif body is not None:
            reply = self._network.post(request, body)
            body.setParent(reply)
        else:
            reply = self._network.post(request, QByteArray())
        if reply is None:
            raise RuntimeError(f"Qt refused to send {method} {path}")
        timer = QTimer(reply)
        timer.setSingleShot(True)
        self._pending[id(reply)] = _Pending(reply, timer, on_ok, on_error, timeout_ms)
        self._timers[id(timer)] = id(reply)
        timer.timeout.connect(self._timed_out)
        reply.finished.connect(self._reply_finished)
        timer.start(timeout_ms)
        return reply

    def _timed_out(self) -> None:
        pending = self._pending.get(self._timers.get(id(self.sender()), 0))
        if pending is not None:
            pending.reply.setProperty(
                "timed_out", f"no answer within {pending.timeout_ms / 1000:.0f} s"
            )
            pending.reply.abort()

    def _reply_finished(self) -> None:
        pending = self._pending.pop(id(self.sender()), None)
        if pending is None:
            return
        reply = pending.reply
        self._timers.pop(id(pending.timer), None)
        pending.timer.stop()
        reply.deleteLater()
        data = bytes(reply.readAll().data())
        error = self.reply_error(reply, data)
        if error is not None:
            log.info("%s failed: %s", reply.url().toString(), error)
            pending.on_error(error)
            return
        try:
            pending.on_ok(data, reply)
        except (ProtocolError, ValueError) as exc:
            log.exception("bad answer from %s", reply.url().toString())
            pending.on_error(
                BackendError(f"Unexpected answer from the server: {exc}", "bad_response")
            )

    def reply_error(self, reply: QNetworkReply, data: bytes) -> Optional[PluginError]:
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        if status is None:
            if reply.error() == QNetworkReply.NetworkError.NoError:  # pyright: ignore[reportCallIssue]
                return None
            timed_out = reply.property("timed_out")
            detail = timed_out or reply.errorString()
            return server_down(self.base_url, str(detail), network_reason(reply, bool(timed_out)))
        status = int(status)
        if status < 400:
            return None
        error = decode_error(status, data)
        error.retry_after = retry_after_s(reply)
        return error

    def _get_json(
        self,
        path: str,
        parse: Callable[[bytes], Any],
        on_ok: Callable[[Any], None],
        on_error: OnError,
    ) -> None:
        self._send("GET", path, lambda data, _r: on_ok(parse(data)), on_error)

    # -- API ------------------------------------------------------------------------------

    def health(
        self, on_ok: Callable[[Health], None], on_error: OnError, retries: int = HEALTH_RETRIES
    ) -> None:
        def failed(error: PluginError) -> None:
            if retries > 0 and not isinstance(error, BackendError):
                QTimer.singleShot(RETRY_DELAY_MS, lambda: self.health(on_ok, on_error, retries - 1))
            else:
                on_error(error)

        self._get_json("/v1/health", Health.from_json, on_ok, failed)

    def models(self, on_ok: Callable[[ModelsInfo], None], on_error: OnError) -> None:
        self._get_json("/v1/models", ModelsInfo.from_json, on_ok, on_error)

    def job(self, job_id: str, on_ok: Callable[[JobInfo], None], on_error: OnError) -> None:
        self._get_json(f"/v1/jobs/{job_id}", JobInfo.from_json, on_ok, on_error)

    def submit_job(
        self, parts: List[Part], on_ok: Callable[[JobCreated], None], on_error: OnError
    ) -> None:
        body = multipart(parts)
        self._send(
            "POST",
            "/v1/jobs",
            lambda d, _r: on_ok(JobCreated.from_json(d)),
            on_error,
            body,
            self.upload_timeout_ms,
        )

    def preprocess(
        self, parts: List[Part], on_ok: Callable[[bytes], None], on_error: OnError
    ) -> None:
        self._send(
            "POST",
            "/v1/preprocess",
            lambda d, _r: on_ok(d),
            on_error,
            multipart(parts),
            self.upload_timeout_ms,
        )

    def styles(self, on_ok: Callable[[List[Style]], None], on_error: OnError) -> None:
        """``GET /v1/styles``: every style the server keeps (built-ins first)."""
        self._get_json("/v1/styles", lambda d: StylesList.from_json(d).styles, on_ok, on_error)

    def save_style(self, style: Style, on_ok: Callable[[Style], None], on_error: OnError) -> None:
        """``PUT /v1/styles/{name}``: create or replace a style (a built-in answers 409)."""
        path = f"/v1/styles/{quote(style.name)}"
        body = style.to_json().encode("utf-8")
        self._send("PUT", path, lambda d, _r: on_ok(Style.from_json(d)), on_error, data=body)

    def delete_style(self, name: str, on_ok: Callable[[], None], on_error: OnError) -> None:
        """``DELETE /v1/styles/{name}`` (a built-in answers 409, an unknown one 404)."""
        self._send("DELETE", f"/v1/styles/{quote(name)}", lambda _d, _r: on_ok(), on_error)

    def cancel(self, job_id: str, on_ok: Callable[[], None], on_error: OnError) -> None:
        self._send("DELETE", f"/v1/jobs/{job_id}", lambda _d, _r: on_ok(), on_error)

    def fetch(self, url: str, on_ok: Callable[[bytes], None], on_error: OnError) -> None:
        self._send("GET", url, lambda d, _r: on_ok(d), on_error, timeout_ms=self.upload_timeout_ms)

    def fetch_raw(
        self, url: str, on_ok: Callable[[bytes, int, int], None], on_error: OnError
    ) -> None:
        """A raw BGRA8 result; its size comes in the X-Width/X-Height headers."""

        receiver = RawReceiver()  # takes the body as it arrives (no big copy at the end)

        def done(rest: bytes, reply: QNetworkReply) -> None:
            data, (width, height) = receiver.body(rest), size_of(reply)
            if width <= 0 or height <= 0 or len(data) != width * height * 4:
                raise ValueError(f"raw result of {len(data)} bytes does not match {width}x{height}")
            on_ok(data, width, height)

        reply = self._send("GET", url, done, on_error, timeout_ms=self.upload_timeout_ms)
        reply.readyRead.connect(lambda: receiver.take(reply))

    def live_frame(
        self,
        session: str,
        parts: List[Part],
        on_ok: Callable[[bytes, Dict[str, str]], None],
        on_error: OnError,
    ) -> QNetworkReply:
        """``POST /v1/live/{session}/frames``: the rendered frame and its ``X-*`` headers
        (lower-case names). Returns the reply so a caller can abort it."""

        def done(data: bytes, reply: QNetworkReply) -> None:
            headers = {
                bytes(name.data()).decode("latin-1").lower(): bytes(value.data()).decode("latin-1")
                for name, value in reply.rawHeaderPairs()
            }
            on_ok(data, headers)

        return self._send(
            "POST",
            f"/v1/live/{session}/frames",
            done,
            on_error,
            multipart(parts),
            self.upload_timeout_ms,
        )

    def close_live(self, session: str, on_ok: Callable[[], None], on_error: OnError) -> None:
        """``DELETE /v1/live/{session}``: end the server's live session."""
        self._send("DELETE", f"/v1/live/{session}", lambda _d, _r: on_ok(), on_error)

    def watch(
        self,
        job_id: str,
        on_progress: Callable[[ProgressEvent], None],
        on_finished: Callable[[JobInfo], None],
        on_error: OnError,
    ) -> "JobWatch":
        from .job_watch import JobWatch, RetryPolicy

        policy = self.retry_policy or RetryPolicy()
        watch = JobWatch(self, job_id, on_progress, on_finished, on_error, policy)
        watch.start()
        return watch


def multipart(parts: List[Part]) -> QHttpMultiPart:
    body = QHttpMultiPart(QHttpMultiPart.ContentType.FormDataType)
    for part in parts:
        item = QHttpPart()
        disposition = f'form-data; name="{part.name}"'
        if part.content_type != "application/json":
            disposition += f'; filename="{part.name}"'
        item.setHeader(QNetworkRequest.KnownHeaders.ContentDispositionHeader, disposition)
        item.setHeader(QNetworkRequest.KnownHeaders.ContentTypeHeader, part.content_type)
        item.setBody(QByteArray(part.data))
        body.append(item)
    return body


def network_reason(reply: QNetworkReply, timed_out: bool) -> str:
    """``refused`` (nothing listens), ``timeout`` or ``network`` (reset, dropped, other)."""
    if timed_out:
        return "timeout"
    if reply.error() == QNetworkReply.NetworkError.ConnectionRefusedError:  # pyright: ignore[reportCallIssue]
        return "refused"
    return "network"


def retry_after_s(reply: QNetworkReply) -> float:
    """The Retry-After header in seconds (0 when absent or not a number of seconds)."""
    text = bytes(reply.rawHeader(b"Retry-After").data()).decode("latin-1").strip()
    try:
        return max(0.0, float(text)) if text else 0.0
    except ValueError:
        return 0.0


def decode_error(status: int, data: bytes) -> BackendError:
    """An HTTP error answer → BackendError with the server's own message when it sent one."""
    try:
        info = ErrorResponse.from_json(data).error
    except ProtocolError:
        text = data.decode("utf-8", errors="replace").strip()[:300]
        try:
            detail = json.loads(text).get("detail", text)
        except (ValueError, AttributeError):
            detail = text
        return BackendError(
            f"Server error {status}: {detail or 'no details'}", "http_error", status
        )
    message = info.message + (f" (field: {info.field})" if info.field else "")
    if "model" in info.code or (info.field or "").endswith("model"):
        if status in (404, 422) and ("not_found" in info.code or "missing" in info.code):
            return ModelMissing(f"Model missing: {message}", info.code, status, info.field)
    return BackendError(f"Server error: {message}", info.code, status, info.field)
