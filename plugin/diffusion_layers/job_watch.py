"""Follow one job: Server-Sent Events first, polling ``GET /v1/jobs/{id}`` as the fallback."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from PyQt5.QtCore import QObject, QTimer
from PyQt5.QtNetwork import QNetworkReply, QNetworkRequest

from .client import Client, OnError
from .errors import PluginError
from .protocol import FINAL_STATES, JobInfo, ProgressEvent, ProtocolError
from .sse import SseParser

log = logging.getLogger(__name__)

POLL_MS = 500
STREAM_IDLE_MS = 30000


class JobWatch(QObject):
    """Follows one job: SSE first, polling when the stream fails; ends with the final JobInfo."""

    def __init__(
        self,
        client: Client,
        job_id: str,
        on_progress: Callable[[ProgressEvent], None],
        on_finished: Callable[[JobInfo], None],
        on_error: OnError,
    ) -> None:
        super().__init__(client)
        self.client = client
        self.job_id = job_id
        self.on_progress = on_progress
        self.on_finished = on_finished
        self.on_error = on_error
        self.stopped = False
        self.polling = False
        self._reading_done = False
        self._parser = SseParser()
        self._stream: Optional[QNetworkReply] = None
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.timeout.connect(self._stream_idle)
        self._poll = QTimer(self)
        self._poll.setSingleShot(True)
        self._poll.timeout.connect(self._poll_once)

    def start(self) -> None:
        request = self.client._request(f"/v1/jobs/{self.job_id}/events")
        request.setRawHeader(b"Accept", b"text/event-stream")
        stream = self.client._network.get(request)
        if stream is None:
            raise RuntimeError("Qt refused to open the event stream")
        self._stream = stream
        stream.readyRead.connect(self._read)
        stream.finished.connect(self._stream_finished)
        self._idle.start(STREAM_IDLE_MS)

    def stop(self) -> None:
        self.stopped = True
        self._idle.stop()
        self._poll.stop()
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()
            stream.deleteLater()

    def _read(self) -> None:
        if self._stream is None or self.stopped or self._reading_done:
            return
        self._idle.start(STREAM_IDLE_MS)
        status = self._stream.attribute(QNetworkRequest.HttpStatusCodeAttribute)
        if status is not None and int(status) >= 400:
            return  # handled in _stream_finished
        for event in self._parser.feed(bytes(self._stream.readAll().data())):
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
        if self._stream is None or self.stopped:
            return
        self._idle.stop()
        stream, self._stream = self._stream, None
        stream.deleteLater()
        data = bytes(stream.readAll().data())
        error = self.client.reply_error(stream, data)
        log.info("event stream of %s ended (%s); polling", self.job_id, error or "no final event")
        self._start_polling()

    def _stream_idle(self) -> None:
        log.info("event stream for %s went quiet; polling", self.job_id)
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()
            stream.deleteLater()
        self._start_polling()

    def _start_polling(self) -> None:
        if not self.stopped and not self.polling:
            self.polling = True
            self._poll_once()

    def _final(self) -> None:
        """A terminal event arrived: read the job once for its results and error."""
        if self.stopped or self.polling:
            return
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()
            stream.deleteLater()
        self._idle.stop()
        self.polling = True
        self._poll_once()

    def _poll_once(self) -> None:
        if not self.stopped:
            self.client.job(self.job_id, self._polled, self._poll_failed)

    def _polled(self, info: JobInfo) -> None:
        if self.stopped:
            return
        if info.state in FINAL_STATES:
            self.stopped = True
            self.on_finished(info)
            return
        self.on_progress(ProgressEvent(info.id, info.step, info.total_steps, info.preview_url))
        self._poll.start(POLL_MS)

    def _poll_failed(self, error: PluginError) -> None:
        if not self.stopped:
            self.stopped = True
            self.on_error(error)
