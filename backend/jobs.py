"""The job queue: one worker thread runs generations, fair between clients; HTTP handlers never wait.

The order is round-robin over clients and FIFO within one client (``backend.fair_queue``), so
one artist's batch never starves another artist's job; ``max_queued_per_client`` caps how many
jobs one client may have waiting.

Jobs move queued -> running -> done | failed | cancelled. Each job has an EventLog (SSE reads
it), a CancelToken (the engine checks it every step) and, once done, its results on disk and as
raw BGRA bytes in memory (``Job``, ``JobResult``: backend/job_records.py). Finished jobs expire
from memory after ``job_ttl_s`` or when more than ``max_jobs_kept`` are kept; their files stay
on disk.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from typing import Protocol

from backend.engine import errors as engine_errors
from backend.engine.types import EngineProtocol, GenerationRequest, Progress
from backend.fair_queue import FairQueue
from backend.fields import canonical_field
from backend.job_records import FINISHED_STATES as FINISHED_STATES
from backend.job_records import Job as Job
from backend.job_records import JobResult as JobResult
from backend.outputs import OutputError, OutputWriter, encode_png, rgba_to_bgra_view
from backend.protocol import ErrorInfo

log = logging.getLogger(__name__)

SERVER_STOPPED = "The server stopped while generating; nothing was changed."


class JobsError(Exception):
    """Base of the queue's own errors."""


class QueueFullError(JobsError):
    code = "queue_full"


class StoppedError(JobsError):
    code = "shutting_down"


def _summary(request: GenerationRequest, model: str | None) -> str:
    return (
        f"model {request.model or model or 'default'}, {request.mode} "
        f"{request.width}x{request.height}, {request.steps} steps, batch {request.batch}"
    )


class PriorityWork(Protocol):
    """Work the worker runs before any queued job (live frames, ``backend.live``)."""

    def pending(self) -> bool: ...

    def run_pending(self) -> None:
        """Run one piece of work on the worker thread; must not raise."""
        ...


class JobQueue:
    def __init__(
        self,
        engine: EngineProtocol,
        writer: OutputWriter,
        *,
        max_queue: int = 64,
        max_queued_per_client: int = 0,
        job_ttl_s: float = 3600.0,
        max_jobs_kept: int = 64,
        preload: bool = False,
        preload_model: str | None = None,
        log_progress: bool = True,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.max_queue = max_queue
        self.max_queued_per_client = max_queued_per_client  # 0 = no per-client limit
        self.job_ttl_s = job_ttl_s
        self.max_jobs_kept = max_jobs_kept
        self.log_progress = log_progress
        self._preload = preload
        self._preload_model = preload_model
        self._cond = threading.Condition()
        self._queue: FairQueue[Job] = FairQueue()  # round-robin between clients
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._priority: PriorityWork | None = None
        self.status = "loading" if preload else "ok"
        self.status_error: str | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="generation-worker", daemon=True)
        self._thread.start()

    def begin_stop(self) -> None:
        """The process is stopping: queued jobs fail now and the running one at its next step,
        each with code ``server_stopped`` (a client hears it on its open stream); no wait."""
        with self._cond:
            already, self._stopping = self._stopping, True
            queued = list(self._queue)
            self._queue.clear()
            running = self._running
            self._cond.notify_all()
        if not already:
            log.info("stopping: %d queued job(s) dropped, running job cancelled", len(queued))
        for job in queued:
            self._fail(job, "server_stopped", SERVER_STOPPED)
        if running is not None:
            running.cancel.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        """``begin_stop`` and wait for the worker to finish its current step."""
        self.begin_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.writer.close(timeout)  # finish compacting the result files written so far

    # --- public queries ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.status == "ok"

    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._running is not None else 0)

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            self._expire_locked(time.time())
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """Jobs ahead of this one (the running job included); None unless queued."""
        with self._cond:
            if job.state != "queued":
                return None
            try:
                ahead = self._queue.index(job)
            except ValueError:
                return None
            return ahead + (1 if self._running is not None else 0)

    def jobs_kept(self) -> int:
        with self._cond:
            return len(self._jobs)

    # --- commands ------------------------------------------------------------------------

    def attach_priority(self, work: PriorityWork) -> None:
        """Let ``work`` jump the queue: checked whenever the worker is free (between jobs)."""
        with self._cond:
            self._priority = work

    def wake(self) -> None:
        """Tell the worker that priority work is waiting."""
        with self._cond:
            self._cond.notify_all()

    def submit(self, request: GenerationRequest, client: str = "") -> Job:
        with self._cond:
            if self._stopping:
                raise StoppedError("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"the queue is full ({self.max_queue} jobs); try again later")
            limit = self.max_queued_per_client
            if limit and self._queue.count(client) >= limit:
                raise QueueFullError(
                    f"you already have {limit} jobs queued (the per-artist limit); "
                    "wait for some to finish or cancel some"
                )
            self._expire_locked(time.time())
            job = Job(
                id=secrets.token_hex(8),
                request=request,
                mode=request.mode,
                summary=_summary(request, self.engine.loaded_model),
                client=client,
            )
            self._jobs[job.id] = job
            self._queue.append(client, job)
            job.events.publish("queued", self._state_data(job))
            self._cond.notify_all()
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job now, a running one within a step; no-op on finished jobs."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return job
            job.cancel.cancel()
            if job.state == "queued" and job in self._queue:
                self._queue.remove(job)
                queued = True
            else:
                queued = False
        if queued:
            self._finish(job, "cancelled")
        return job

    # --- worker --------------------------------------------------------------------------

    def _work(self) -> None:
        if self._preload:
            self._run_preload()
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._priority_waiting():
                    self._cond.wait()
                if self._stopping:
                    return
                urgent = self._priority if self._priority_waiting() else None
                if urgent is None:
                    job = self._queue.popleft()
                    self._running = job
                    job.state = "running"
                    job.started_at = time.time()
            if urgent is not None:
                self._run_priority(urgent)
                continue
            try:
                self._run(job)
            except Exception as exc:  # never let one job kill the worker
                log.exception("job %s: unexpected failure", job.id)
                self._fail(job, "internal_error", f"internal error: {type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._running = None
                    self._expire_locked(time.time())

    def _priority_waiting(self) -> bool:
        return self._priority is not None and self._priority.pending()

    def _run_priority(self, work: PriorityWork) -> None:
        try:
            work.run_pending()
        except Exception:  # never let priority work kill the worker
            log.exception("priority work failed")

    def _run_preload(self) -> None:
        started = time.perf_counter()
        try:
            self.engine.preload(self._preload_model)
        except Exception as exc:
            self.status = "error"
            self.status_error = f"preloading the model failed: {exc}"
            log.error("%s", self.status_error, exc_info=exc)
            return
        self.status = "ok"
        log.info(
            "model %s loaded in %.1f s",
            self.engine.loaded_model or self._preload_model,
            time.perf_counter() - started,
        )

    def _run(self, job: Job) -> None:
        request = job.request
        assert request is not None
        # 1. Announce the start.
        # Progress counts every step of every item (and of every tile: engine.planned_steps).
        planner = getattr(self.engine, "planned_steps", None)
        job.total_steps = planner(request) if callable(planner) else request.steps * request.batch
        job.events.publish("started", self._state_data(job))
        started = time.perf_counter()
        bar = self._progress_bar(job)
        # 2. Generate, reporting progress and honouring the cancel token every step.
        try:
            layers = self.engine.generate(request, self._on_progress(job, bar), job.cancel)
            job.cancel.check()
        except engine_errors.Cancelled:
            if self._stopping:
                self._fail(job, "server_stopped", SERVER_STOPPED)
            else:
                self._finish(job, "cancelled")
            return
        except engine_errors.EngineError as exc:
            log.error("job %s failed: %s", job.id, exc, exc_info=exc)
            self._fail(job, exc.code, exc.message, exc.field)
            return
        except MemoryError:
            log.exception("job %s: out of host memory", job.id)
            self._fail(job, "out_of_memory", "out of memory: try a smaller size or batch")
            return
        finally:
            if bar is not None:
                bar.close()
        # 3. Write every result to disk before anyone hears the job is done.
        try:
            for index, layer in enumerate(layers):
                path = self.writer.write(job.id, index, layer, job.created_at)
                result = JobResult(
                    index=index,
                    seed=layer.seed,
                    x=layer.x,
                    y=layer.y,
                    width=layer.width,
                    height=layer.height,
                    raw=rgba_to_bgra_view(layer.image),
                    path=path,
                    layer_index=layer.metadata.layer_index,
                    composite_error=layer.metadata.composite_error,
                )
                job.results.append(result)
                job.events.publish("result", {"index": index})
        except OutputError as exc:
            log.error("job %s: %s", job.id, exc, exc_info=exc)
            self._fail(job, exc.code, str(exc))
            return
        # 4. Done: one clear log line.
        elapsed = time.perf_counter() - started
        job.summary = _summary(request, self.engine.loaded_model)
        log.info("job %s done: %s, %.2f s", job.id, job.summary, elapsed)
        self._finish(job, "done")

    def _on_progress(self, job: Job, bar):
        def report(progress: Progress) -> None:
            job.step = int(progress.step)
            job.total_steps = int(progress.total)
            has_preview = False
            if progress.preview is not None:
                try:
                    job.preview_png = encode_png(progress.preview)
                    has_preview = True
                except (ValueError, TypeError, OSError) as exc:
                    log.debug("job %s: preview not encodable: %s", job.id, exc)
            data = {"id": job.id, "step": job.step, "total_steps": job.total_steps}
            data["preview_url"] = f"/v1/jobs/{job.id}/preview.png" if has_preview else None
            job.events.publish("progress", data)
            if bar is not None:
                bar.total = job.total_steps
                bar.n = job.step
                bar.refresh()

        return report

    def _progress_bar(self, job: Job):
        if not (self.log_progress and sys.stderr.isatty()):
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=job.total_steps, desc=f"job {job.id}", unit="step", leave=False)

    # --- state changes -------------------------------------------------------------------

    def _fail(self, job: Job, code: str, message: str, field: str | None = None) -> None:
        job.error = ErrorInfo(code=code, message=message, field=canonical_field(field))
        self._finish(job, "failed")

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        job.finished_at = time.time()
        job.request = None  # free the input pixels (the worker keeps its own reference)
        if state == "cancelled":
            log.info("job %s cancelled: %s", job.id, job.summary)
        data = self._state_data(job)
        if job.error is not None:
            data["error"] = job.error.model_dump()
        job.events.publish(state, data)

    def _state_data(self, job: Job) -> dict:
        return {"id": job.id, "state": job.state}

    def _expire_locked(self, now: float) -> None:
        finished = [j for j in self._jobs.values() if j.finished and j.finished_at is not None]
        finished.sort(key=lambda j: j.finished_at or 0.0)
        excess = max(0, len(finished) - self.max_jobs_kept)
        for index, job in enumerate(finished):
            if index < excess or now - (job.finished_at or now) > self.job_ttl_s:
                del self._jobs[job.id]
