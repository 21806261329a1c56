"""The ingress's view of the shared job registry, shaped like ``backend.jobs.JobQueue``.

``create_app(settings, engine, queue=ClusterQueue(...))`` serves the unchanged v1 routes on top of
it: ``get`` returns a ``Job`` snapshot whose ``events`` follow the registry (``RemoteEventLog``)
and whose results fetch their raw pixels from the registry on demand. Nothing job-related is kept
in the ingress, so any ingress replica answers for any job, and a restarted one forgets nothing.

Live frames still run in the ingress process (its own engine, loaded on the first frame): the
priority-work thread here stands in for the single-process worker that runs them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from backend.cluster.registry import model_key
from backend.engine.types import GenerationRequest
from backend.jobs import Job, JobResult, PriorityWork, QueueFullError, StoppedError, _summary
from backend.protocol import ErrorInfo

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0


class RemoteResult(JobResult):
    """A result whose raw BGRA pixels are fetched from the registry when first read."""

    def __init__(self, fetch, **values: Any) -> None:
        self._fetch = fetch
        self._raw: bytes | memoryview = b""
        super().__init__(raw=b"", **values)

    @property  # type: ignore[override]
    def raw(self) -> bytes | memoryview:
        if not self._raw:
            self._raw = self._fetch() or b""
        return self._raw

    @raw.setter
    def raw(self, value: bytes | memoryview) -> None:
        self._raw = value


class RemoteEventLog:
    """What ``backend.api.sse.event_stream`` needs from an EventLog, fed by the registry."""

    def __init__(self, queue: ClusterQueue, job: Job, events: list) -> None:
        self._queue = queue
        self._job = job
        self._events: list = []
        self._flags: list[asyncio.Event] = []
        self._task: asyncio.Task | None = None
        self._add(events)

    def _add(self, events: list) -> None:
        from backend.events import Event

        known = self._events[-1].seq if self._events else 0
        for seq, name, data in events:
            if seq <= known:
                continue
            if self._events and self._events[-1].name == "progress" and name == "progress":
                self._events[-1] = Event(seq, name, data)
            else:
                self._events.append(Event(seq, name, data))

    def since(self, seq: int) -> list:
        return [event for event in self._events if event.seq > seq]

    @property
    def finished(self) -> bool:
        from backend.events import TERMINAL_EVENTS

        return bool(self._events) and self._events[-1].name in TERMINAL_EVENTS

    def subscribe(self) -> asyncio.Event:
        flag = asyncio.Event()
        self._flags.append(flag)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        return flag

    def unsubscribe(self, flag: asyncio.Event) -> None:
        self._flags = [f for f in self._flags if f is not flag]
        if not self._flags and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _follow(self) -> None:
        """Long-poll the registry; every answer updates the job and wakes the stream."""
        while not self.finished:
            after = self._events[-1].seq if self._events else 0
            try:
                snapshot = await self._queue.registry.wait.remote(self._job.id, after, 5.0)
            except Exception as exc:  # the registry restarting: try again shortly
                log.warning("job %s: waiting for events failed: %s", self._job.id, exc)
                await asyncio.sleep(0.5)
                continue
            if snapshot is None:
                return
            self._queue.update(self._job, snapshot)
            self._add(snapshot["events"])
            for flag in list(self._flags):
                flag.set()


class ClusterQueue:
    def __init__(self, registry: Any, default_model: str | None) -> None:
        self.registry = registry
        self.default_model = default_model
        self.status = "ok"
        self.status_error: str | None = None
        self.writer = _FinalFiles()
        self._priority: PriorityWork | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ok"

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.registry, method).remote(*args), timeout=CALL_TIMEOUT_S)

    # --- the JobQueue interface the routes use --------------------------------------------

    def submit(self, request: GenerationRequest, client: str = "") -> Job:
        if self._stopping:
            raise StoppedError("the server is shutting down")
        key = model_key(request.model, request.vae, self.default_model)
        created = self._call("submit", request, client, _summary(request, None), key)
        if "error" in created:
            raise QueueFullError(created["error"]["message"])
        job = self.get(created["id"])
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        snapshot = self._call("get", job_id)
        if snapshot is None:
            return None
        job = Job(id=snapshot["id"], request=None, mode=snapshot["mode"], summary="")
        self.update(job, snapshot)
        job.events = RemoteEventLog(self, job, snapshot["events"])  # type: ignore[assignment]
        return job

    def update(self, job: Job, snapshot: dict) -> None:
        for name in ("summary", "client", "state", "step", "total_steps"):
            setattr(job, name, snapshot[name])
        for name in ("created_at", "started_at", "finished_at"):
            setattr(job, name, snapshot[name])
        job._cluster_position = snapshot.get("position")  # type: ignore[attr-defined]
        error = snapshot["error"]
        job.error = ErrorInfo(**error) if error else None
        while len(job.results) < len(snapshot["results"]):
            info = dict(snapshot["results"][len(job.results)])
            index, path = info.pop("index"), Path(info.pop("path"))
            job.results.append(
                RemoteResult(self._raw_fetcher(job.id, index), index=index, path=path, **info)
            )
        if snapshot["preview"] is not None:
            job.preview_png = snapshot["preview"]

    def _raw_fetcher(self, job_id: str, index: int):
        return lambda: self._call("raw", job_id, index)

    def position(self, job: Job) -> int | None:
        """From the snapshot this ``job`` was built or last updated from (no extra call)."""
        if job.state != "queued":
            return None
        return getattr(job, "_cluster_position", None)

    def cancel(self, job_id: str) -> Job | None:
        if self._call("cancel", job_id) is None:
            return None
        return self.get(job_id)

    def queue_length(self) -> int:
        return int(self._call("queue_length"))

    # --- lifecycle and live frames ---------------------------------------------------------

    def start(self) -> None:
        self._call("ping")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="live-worker", daemon=True)
            self._thread.start()

    def begin_stop(self) -> None:
        """Stop taking work in this ingress (no wait); the jobs live on in the registry."""
        self._stopping = True
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this ingress only: the jobs live on in the registry."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def attach_priority(self, work: PriorityWork) -> None:
        self._priority = work

    def wake(self) -> None:
        self._wake.set()

    def _work(self) -> None:
        while not self._stopping:
            self._wake.wait(1.0)
            self._wake.clear()
            while self._priority is not None and self._priority.pending():
                try:
                    self._priority.run_pending()
                except Exception:  # never let a live frame kill the thread
                    log.exception("live frame failed")


class _FinalFiles:
    """Generation replicas write final files (no compaction): nothing to wait for."""

    def wait_compacted(self, timeout: float = 30.0, target: Path | None = None) -> bool:
        return True
