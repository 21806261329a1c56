"""The cluster registry's job book without Ray: fair dispatch, the retry-once rule for a lost
replica, cancel, limits, model keys (backend/cluster/registry.py; docs/cluster.md)."""

from __future__ import annotations

import pytest

from backend.cluster.registry import (
    MAX_ATTEMPTS,
    JobBook,
    QueueFullError,
    checkpoint_of,
    model_key,
)
from backend.engine.types import GenerationRequest


def request(seed: int = 0) -> GenerationRequest:
    return GenerationRequest(mode="txt2img", width=64, height=64, steps=2, seed=seed)


def names(book: JobBook, job_id: str) -> list[str]:
    return [name for _, name, _ in book.jobs[job_id].events]


def test_dispatch_is_fair_between_clients():
    book = JobBook()
    ana = [book.submit(request(i), "ana", "s", "tiny")["id"] for i in range(4)]
    ben = book.submit(request(), "ben", "s", "tiny")["id"]
    assert book.position(ben) == 1
    order = [book.next().id for _ in range(5)]  # type: ignore[union-attr]
    assert order == [ana[0], ben, ana[1], ana[2], ana[3]]
    assert book.next() is None and book.queue_length() == 5  # all five running


def test_a_lost_replica_retries_the_job_once_then_fails_it_with_a_sentence():
    assert MAX_ATTEMPTS == 2
    book = JobBook()
    job = book.submit(request(), "ana", "s", "tiny")["id"]
    other = book.submit(request(), "ben", "s", "tiny")["id"]
    assert book.next().id == job  # type: ignore[union-attr]
    assert book.progress(job, 1, 2, None, "host:1") is False
    assert book.lost(job, "ActorDiedError") is True
    assert book.jobs[job].state == "queued" and book.jobs[job].step == 0
    assert book.next().id == job, "the retried job goes first"  # type: ignore[union-attr]
    assert book.lost(job, "ActorDiedError") is False
    record = book.jobs[job]
    assert record.state == "failed" and record.error["code"] == "worker_lost"
    assert "submit it again" in record.error["message"]
    assert names(book, job) == ["queued", "started", "progress", "queued", "started", "failed"]
    assert book.next().id == other  # the queue goes on  # type: ignore[union-attr]


def test_done_needs_the_results_first_and_cancel_stops_a_running_job():
    book = JobBook()
    job = book.submit(request(), "ana", "s", "tiny")["id"]
    book.next()
    assert book.cancel(job)["state"] == "running"
    assert book.progress(job, 1, 2, b"png", "host:1") is True  # the replica is told to stop
    book.complete(job, {"state": "cancelled"})
    assert book.jobs[job].state == "cancelled"
    done = book.submit(request(), "ana", "s", "tiny")["id"]
    book.next()
    info = {"index": 0, "seed": 1, "x": 0, "y": 0, "width": 64, "height": 64, "path": "/o/a.png"}
    book.complete(done, {"state": "done", "results": [info], "raws": [b"x" * 16384]})
    assert names(book, done)[-2:] == ["result", "done"]
    assert book.jobs[done].request is None  # input pixels freed


def test_queue_limits_and_cancel_of_a_queued_job():
    book = JobBook(max_queue=3, max_queued_per_client=2)
    a = [book.submit(request(), "ana", "s", "tiny")["id"] for _ in range(2)]
    with pytest.raises(QueueFullError, match="per-artist limit"):
        book.submit(request(), "ana", "s", "tiny")
    book.submit(request(), "ben", "s", "tiny")
    with pytest.raises(QueueFullError, match="queue is full"):
        book.submit(request(), "cat", "s", "tiny")
    assert book.cancel(a[0])["state"] == "cancelled" and book.position(a[1]) == 0
    assert book.cancel("nope") is None


def test_model_key_is_checkpoint_plus_explicit_vae():
    assert model_key(None, None, "tiny") == "tiny"
    assert model_key(None, None, None) == "default" and checkpoint_of("default") is None
    assert model_key("sdxl.safetensors", "fix.safetensors", "tiny") == (
        "sdxl.safetensors|vae=fix.safetensors"
    )
    assert checkpoint_of("sdxl.safetensors|vae=fix.safetensors") == "sdxl.safetensors"
