"""Get one job accepted and follow it to its end, riding out dropped connections.

``submit_job`` retries an upload the server turned away (429, 503 ``queue_full``).

Server-Sent Events first; a stream that drops is resumed with ``Last-Event-ID``, and when that
does not work either the watch polls ``GET /v1/jobs/{id}``. A failed poll is retried with
backoff while the failure is transient (reset, timeout, 5xx, 503, 429 after its Retry-After) and
only reported once a bounded window has passed, so the job keeps its identity across a
reconnect: results already on the server are still fetched. Everything runs on QTimers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .client import Client, OnError
from .errors import BackendError, ConnectionFailed, PluginError
from .protocol import FINAL_STATES, JobCreated, JobInfo, ProgressEvent, ProtocolError
from .qt import QNetworkReply, QNetworkRequest, QObject, QTimer
from .request import Part
from .sse import SseParser

log = logging.getLogger(__name__)

POLL_MS = 500
STREAM_IDLE_MS = 30000
STOPPED = "The server stopped while generating; nothing was changed."
TRANSIENT_STATUS = (500, 502, 503, 504)

# What a failed request means for the watch (see classify()).
FATAL, TRANSIENT, REFUSED, RATE_LIMITED, JOB_LOST = (
    "fatal",
    "transient",
    "refused",
    "rate_limited",
    "job_lost",
)


@dataclass
class RetryPolicy:
    """How long a watch keeps trying. Times in milliseconds."""

    window_ms: int = 60000  # transient errors (reset, timeout, 5xx, 429): retry this long
    refused_window_ms: int = 5000  # connection refused: the server process is gone
    first_ms: int = 500  # first retry delay, doubled each time ...
    max_ms: int = 8000  # ... up to this
    stream_resumes: int = 3  # Last-Event-ID reconnects of a dropped stream before polling
    poll_ms: int = POLL_MS
    stream_idle_ms: int = STREAM_IDLE_MS

    def check(self) -> None:
        for name in ("window_ms", "refused_window_ms", "first_ms", "max_ms", "poll_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"RetryPolicy.{name} must be a positive int, got {value!r}")
        if self.stream_resumes < 0:
            raise ValueError(f"RetryPolicy.stream_resumes must be >= 0, got {self.stream_resumes}")


def backoff_ms(attempt: int, first_ms: int, max_ms: int) -> int:
    """Exponential backoff: first_ms, 2×, 4× … capped at max_ms (attempt counts from 0)."""
    return min(max_ms, first_ms * (2 ** min(attempt, 30)))


def classify(error: PluginError) -> Tuple[str, int]:
    """(kind, wait in ms) for a failed request of a running watch."""
    if isinstance(error, ConnectionFailed):
        return (REFUSED if error.reason == "refused" else TRANSIENT), 0
    if isinstance(error, BackendError):
        if error.status == 429:
            return RATE_LIMITED, int(max(error.retry_after, 1.0) * 1000)
        if error.status in TRANSIENT_STATUS:
            return TRANSIENT, int(error.retry_after * 1000)
        if error.status == 404 and error.code == "job_not_found":
            return JOB_LOST, 0
    return FATAL, 0


def submit_job(
    client: Client,
    parts: List[Part],
    on_ok: Callable[[JobCreated], None],
    on_error: OnError,
    policy: Optional[RetryPolicy] = None,
) -> None:
    """``POST /v1/jobs``, retried while the server is up but turned the job away: 429 (after
    Retry-After) and 503 ``queue_full``. A refused connection is reported at once (the server
    is not running; the connection reconnects by itself); a reset or timeout is NOT retried:
    the job may exist, and a second upload would run it twice."""
    policy = policy or client.retry_policy or RetryPolicy()
    started = time.monotonic()

    def failed(error: PluginError, attempt: int) -> None:
        kind, wait_ms = classify(error)
        safe = kind == RATE_LIMITED or (isinstance(error, BackendError) and error.status == 503)
        delay = max(wait_ms, backoff_ms(attempt, policy.first_ms, policy.max_ms))
        if not safe or (time.monotonic() - started) * 1000 + delay > policy.window_ms:
            on_error(error)
            return
        log.info("submit: %s; retry %d in %d ms", error, attempt + 1, delay)
        QTimer.singleShot(delay, lambda: send(attempt + 1))

    def send(attempt: int) -> None:
        client.submit_job(parts, on_ok, lambda error: failed(error, attempt))

    send(0)


class JobWatch(QObject):
    """Follows one job; ends with ``on_finished(JobInfo)`` or one ``on_error``."""

    def __init__(
        self,
        client: Client,
        job_id: str,
        on_progress: Callable[[ProgressEvent], None],
        on_finished: Callable[[JobInfo], None],
        on_error: OnError,
        policy: Optional[RetryPolicy] = None,
    ) -> None:
        super().__init__(client)
        self.client = client
        self.job_id = job_id
        self.on_progress = on_progress
        self.on_finished = on_finished
        self.on_error = on_error
        self.policy = policy or RetryPolicy()
        self.policy.check()
        self.stopped = False
        self.polling = False
        self.retries = 0  # failed requests retried so far (all episodes)
        self.resumes = 0  # stream reconnects with Last-Event-ID
        self.last_event_id = ""
        # Told of the first failure of each retry episode (the docker shows the server as lost).
        self.on_retry: Optional[Callable[[PluginError], None]] = None
        self._reading_done = False
        self._stream_events = 0  # events read on the current stream
        self._trouble_since: Optional[float] = None  # start of the current failure episode
        self._attempt = 0  # failures in the current episode
        self._parser = SseParser()
        self._stream: Optional[QNetworkReply] = None
        self._idle = self._timer(self._stream_idle)
        self._poll = self._timer(self._poll_once)
        self._resume = self._timer(self._open_stream)

    def _timer(self, slot: Callable[[], None]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        return timer

    # -- public ---------------------------------------------------------------------------

    def start(self) -> None:
        self._open_stream()

    def stop(self) -> None:
        self.stopped = True
        for timer in (self._idle, self._poll, self._resume):
            timer.stop()
        self._drop_stream()

    @property
    def retrying(self) -> bool:
        """A failure episode is in progress (the next try is scheduled)."""
        return self._trouble_since is not None and not self.stopped

    # -- the event stream -----------------------------------------------------------------

    def _open_stream(self) -> None:
        if self.stopped or self.polling:
            return
        request = self.client._request(f"/v1/jobs/{self.job_id}/events")
        request.setRawHeader(b"Accept", b"text/event-stream")
        if self.last_event_id:
            request.setRawHeader(b"Last-Event-ID", self.last_event_id.encode("ascii", "replace"))
        stream = self.client._network.get(request)
        if stream is None:
            raise RuntimeError("Qt refused to open the event stream")
        self._parser = SseParser()  # a resumed stream starts on an event boundary
        self._stream_events = 0
        self._stream = stream
        stream.readyRead.connect(self._read)
        stream.finished.connect(self._stream_finished)
        self._idle.start(self.policy.stream_idle_ms)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()
            stream.deleteLater()

    def _read(self) -> None:
        if self._stream is None or self.stopped or self._reading_done:
            return
        self._idle.start(self.policy.stream_idle_ms)
        status = self._stream.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        if status is not None and int(status) >= 400:
            return  # handled in _stream_finished
        for event in self._parser.feed(bytes(self._stream.readAll().data())):
            self._stream_events += 1
            if event.id:
                self.last_event_id = event.id
            self._recovered()
            if event.event == "progress":
                try:
                    self.on_progress(ProgressEvent.from_json(event.data))
                except ProtocolError:
                    log.warning("ignoring malformed progress event %r", event.data)
            elif event.event in FINAL_STATES:
                # Never abort a reply inside its own readyRead: finish on the next loop turn.
                self._reading_done = True
                QTimer.singleShot(0, self._final)
                return

    def _stream_finished(self) -> None:
        if self._stream is None or self.stopped or self._reading_done:
            return
        self._idle.stop()
        stream, self._stream = self._stream, None
        stream.deleteLater()
        data = bytes(stream.readAll().data())
        error = self.client.reply_error(stream, data)
        # 1. A stream that delivered events and then dropped is resumed where it stopped.
        if error is None or isinstance(error, ConnectionFailed):
            if self._stream_events > 0 and self.resumes < self.policy.stream_resumes:
                self.resumes += 1
                log.info(
                    "event stream of %s dropped (%s); resuming after event %s",
                    self.job_id,
                    error or "closed early",
                    self.last_event_id or "0",
                )
                self._resume.start(self.policy.first_ms if error is not None else 0)
                return
        # 2. Otherwise polling takes over; it retries transient failures itself.
        log.info("event stream of %s ended (%s); polling", self.job_id, error or "no final event")
        self._start_polling()

    def _stream_idle(self) -> None:
        log.info("event stream for %s went quiet; polling", self.job_id)
        self._drop_stream()
        self._start_polling()

    def _final(self) -> None:
        """A terminal event arrived: read the job once for its results and error."""
        if self.stopped or self.polling:
            return
        self._drop_stream()
        self._idle.stop()
        self.polling = True
        self._poll_once()

    # -- polling --------------------------------------------------------------------------

    def _start_polling(self) -> None:
        if not self.stopped and not self.polling:
            self.polling = True
            self._resume.stop()
            self._poll_once()

    def _poll_once(self) -> None:
        if not self.stopped:
            self.client.job(self.job_id, self._polled, self._poll_failed)

    def _polled(self, info: JobInfo) -> None:
        if self.stopped:
            return
        self._recovered()
        if info.state in FINAL_STATES:
            self.stopped = True
            self.on_finished(info)
            return
        self.on_progress(ProgressEvent(info.id, info.step, info.total_steps, info.preview_url))
        self._poll.start(self.policy.poll_ms)

    def _recovered(self) -> None:
        if self._trouble_since is not None:
            log.info(
                "job %s: the server answers again after %d retries", self.job_id, self._attempt
            )
        self._trouble_since, self._attempt = None, 0

    def _poll_failed(self, error: PluginError) -> None:
        if self.stopped:
            return
        kind, wait_ms = classify(error)
        if kind in (FATAL, JOB_LOST):
            self._give_up(kind, error)
            return
        # 1. The failure episode starts with its first failure and ends with any answer.
        now = time.monotonic()
        if self._trouble_since is None:
            self._trouble_since = now
            if self.on_retry is not None:
                self.on_retry(error)
        window = self.policy.refused_window_ms if kind == REFUSED else self.policy.window_ms
        # 2. Wait: Retry-After when the server named it, else exponential backoff.
        delay = max(wait_ms, backoff_ms(self._attempt, self.policy.first_ms, self.policy.max_ms))
        elapsed_ms = (now - self._trouble_since) * 1000
        if elapsed_ms + delay > window:
            self._give_up(kind, error)
            return
        # 3. Try again later; the job keeps its id, so results already made are still fetched.
        self._attempt += 1
        self.retries += 1
        log.info(
            "job %s: %s (%s); retry %d in %d ms", self.job_id, kind, error, self._attempt, delay
        )
        self._poll.start(delay)

    def _give_up(self, kind: str, error: PluginError) -> None:
        self.stopped = True
        self._drop_stream()
        log.warning("job %s: giving up after %d retries: %s", self.job_id, self._attempt, error)
        if isinstance(error, ConnectionFailed):
            self.on_error(ConnectionFailed(f"{STOPPED} {error}", error.reason))
        elif kind == JOB_LOST:
            self.on_error(
                BackendError(
                    f"{STOPPED} The server no longer knows this job (it was restarted).",
                    "job_lost",
                    404,
                )
            )
        elif kind != FATAL:
            now = time.monotonic()
            seconds = max(0.0, now - (self._trouble_since or now))
            self.on_error(
                BackendError(
                    f"{error} Gave up after {self._attempt} retries in {seconds:.1f} s;"
                    " nothing was changed.",
                    getattr(error, "code", "error"),
                    getattr(error, "status", 0),
                )
            )
        else:
            self.on_error(error)
