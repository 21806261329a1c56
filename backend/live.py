"""Live painting sessions: one per document, a one-slot mailbox each, latest frame wins.

The GPU is one resource, so live frames run on the job queue's single worker thread
(``JobQueue.attach_priority``): whenever the worker is free it renders the waiting live frames
before it starts the next queued job. A frame therefore waits at most for the job that is
already running, never for the queue behind it.

Each session holds at most ONE waiting frame. A newer frame replaces the waiting one, and the
replaced request is answered at once with ``Superseded`` (HTTP 409), so no client ever waits
for a stale picture. A session keeps its seed for every frame (the picture stays stable while
the artist paints) and may record its frames as PNG files.

Threads: HTTP handlers call ``submit``/``info``/``close`` (cheap, under one lock); the worker
calls ``pending``/``run_pending``. Results travel through ``concurrent.futures.Future``.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.engine import errors as engine_errors
from backend.engine.types import CancelToken, EngineProtocol, GenerationRequest
from backend.outputs import encode_png
from backend.protocol import MAX_SEED, LiveSessionInfo

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 16
DEFAULT_IDLE_S = 900.0


class LiveError(Exception):
    """Base of the live sessions' own errors (the API maps ``status`` and ``code``)."""

    status = 400
    code = "live_error"


class Superseded(LiveError):
    status = 409
    code = "superseded"

    def __init__(self, session: str) -> None:
        super().__init__(f"live frame for session {session!r} was replaced by a newer one")


class LiveClosed(LiveError):
    status = 409
    code = "live_closed"

    def __init__(self, session: str) -> None:
        super().__init__(f"live session {session!r} was closed before the frame was rendered")


class TooManySessions(LiveError):
    status = 503
    code = "live_sessions_full"


@dataclass
class LiveFrame:
    """One rendered frame: RGBA pixels placed at (x, y) inside the request's region."""

    session: str
    number: int
    image: np.ndarray
    x: int
    y: int
    seed: int
    render_ms: float
    wait_ms: float


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Session:
    id: str
    seed: int
    pending: _Pending | None = None
    running: bool = False
    closed: bool = False
    frames: int = 0
    superseded: int = 0
    failed: int = 0
    last_ms: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    cancel: CancelToken = field(default_factory=CancelToken)
    recorded: int = 0


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


class LiveSessions:
    """All live sessions of one server (see the module doc)."""

    def __init__(
        self,
        engine: EngineProtocol,
        output_dir: str | os.PathLike[str],
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions={max_sessions!r}: must be >= 1")
        if idle_s <= 0:
            raise ValueError(f"idle_s={idle_s!r}: must be > 0")
        self.engine = engine
        self.record_root = Path(output_dir) / "live"
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._wake: Callable[[], None] = lambda: None
        self._stopped = False

    def attach(self, wake: Callable[[], None]) -> None:
        """``wake`` tells the worker that a frame is waiting (``JobQueue.wake``)."""
        self._wake = wake

    # --- HTTP side -----------------------------------------------------------------------

    def submit(self, session_id: str, request: GenerationRequest, seed: int | None) -> Future:
        """Put a frame in the session's mailbox; returns a Future of ``LiveFrame``.

        ``seed`` None keeps the session's seed (picked at random when the session starts); a
        number becomes the session's seed from now on. A frame still waiting in the mailbox is
        answered with ``Superseded`` at once.
        """
        future: Future = Future()
        with self._lock:
            # 1. Refuse after stop; expire idle sessions; find or start this one.
            if self._stopped:
                raise LiveClosed(session_id)
            self._expire_locked(time.monotonic())
            session = self._sessions.get(session_id)
            if session is None:
                if len(self._sessions) >= self.max_sessions:
                    raise TooManySessions(
                        f"{len(self._sessions)} live sessions are open (the limit is "
                        f"{self.max_sessions}); stop live mode in another document"
                    )
                session = _Session(session_id, seed if seed is not None else random_seed())
                self._sessions[session_id] = session
            elif seed is not None:
                session.seed = seed
            # 2. Same seed every frame.
            request.seed = session.seed
            request.batch = 1
            # 3. The newest frame wins the mailbox.
            replaced = session.pending
            session.pending = _Pending(request, future)
            session.last_used = time.monotonic()
            if replaced is not None:
                session.superseded += 1
        if replaced is not None:
            _resolve(replaced.future, error=Superseded(session_id))
        self._wake()
        return future

    def info(self, session_id: str) -> LiveSessionInfo | None:
        with self._lock:
            session = self._sessions.get(session_id)
            return None if session is None else self._info(session)

    def close(self, session_id: str) -> LiveSessionInfo | None:
        """End a session: its waiting frame is answered ``LiveClosed``, a running one stops."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                return None
            session.closed = True
            session.cancel.cancel()
            waiting, session.pending = session.pending, None
            info = self._info(session)
        if waiting is not None:
            _resolve(waiting.future, error=LiveClosed(session_id))
        log.info("live session %s closed after %d frame(s)", session_id, info.frames)
        return info

    def stop(self) -> None:
        """Server shutdown: close every session."""
        with self._lock:
            self._stopped = True
            names = list(self._sessions)
        for name in names:
            self.close(name)

    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def record(self, frame: LiveFrame) -> Path:
        """Save a frame as ``<output_dir>/live/<session>/<number>.png`` (atomic rename)."""
        folder = self.record_root / frame.session
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{frame.number:06d}.png"
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(encode_png(frame.image))
            os.replace(tmp, target)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            session = self._sessions.get(frame.session)
            if session is not None:
                session.recorded += 1
        return target

    # --- worker side (JobQueue priority hook) ---------------------------------------------

    def pending(self) -> bool:
        with self._lock:
            return any(s.pending is not None for s in self._sessions.values())

    def run_pending(self) -> None:
        """Render the frame that has waited longest (one frame; the worker calls again)."""
        # 1. Take it out of its mailbox.
        with self._lock:
            waiting = [s for s in self._sessions.values() if s.pending is not None]
            if not waiting:
                return
            session = min(waiting, key=lambda s: s.pending.queued_at)  # type: ignore[union-attr]
            pending, session.pending = session.pending, None
            assert pending is not None
            session.running = True
            number = session.frames + session.failed + 1
        try:
            self._render(session, pending, number)
        finally:
            with self._lock:
                session.running = False
                session.last_used = time.monotonic()

    def _render(self, session: _Session, pending: _Pending, number: int) -> None:
        if not pending.future.set_running_or_notify_cancel():
            return  # the client went away
        started = time.perf_counter()
        wait_ms = (started - pending.queued_at) * 1000.0
        try:
            layers = self.engine.generate(pending.request, None, session.cancel)
        except engine_errors.Cancelled:
            pending.future.set_exception(LiveClosed(session.id))
            return
        except engine_errors.EngineError as exc:
            log.error("live %s frame %d failed: %s", session.id, number, exc, exc_info=exc)
            self._count_failure(session)
            pending.future.set_exception(exc)
            return
        except Exception as exc:  # never let one frame kill the worker
            log.exception("live %s frame %d: unexpected failure", session.id, number)
            self._count_failure(session)
            pending.future.set_exception(exc)
            return
        elapsed = (time.perf_counter() - started) * 1000.0
        layer = layers[0]
        with self._lock:
            session.frames += 1
            session.last_ms = elapsed
        frame = LiveFrame(
            session.id, number, layer.image, layer.x, layer.y, layer.seed, elapsed, wait_ms
        )
        pending.future.set_result(frame)

    def _count_failure(self, session: _Session) -> None:
        with self._lock:
            session.failed += 1

    # --- helpers -------------------------------------------------------------------------

    def _info(self, session: _Session) -> LiveSessionInfo:
        folder = self.record_root / session.id
        return LiveSessionInfo(
            session=session.id,
            seed=session.seed,
            frames=session.frames,
            superseded=session.superseded,
            failed=session.failed,
            last_ms=None if session.last_ms is None else round(session.last_ms, 2),
            record_dir=str(folder) if session.recorded else None,
        )

    def _expire_locked(self, now: float) -> None:
        for name, session in list(self._sessions.items()):
            idle = now - session.last_used > self.idle_s
            if idle and session.pending is None and not session.running:
                del self._sessions[name]
                log.info("live session %s expired after %.0f s idle", name, self.idle_s)


def _resolve(future: Future, error: BaseException) -> None:
    """Answer a waiting frame with an error (no-op when its client already gave up)."""
    if future.set_running_or_notify_cancel():
        future.set_exception(error)
