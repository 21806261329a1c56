"""SSE: event order, late subscribers, keep-alive, resume, and disconnects that lose nothing."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .harness import job_params, read_events, submit, wait_job


def test_event_order_for_a_batch(client):
    job_id = submit(client, job_params(steps=3, batch=2, seed=7))["id"]
    events = read_events(client, job_id)
    names = [name for name, _ in events]
    assert names[0] == "queued"
    assert names[-1] == "done"
    assert names.index("started") < names.index("progress") < names.index("result")
    results = [data for name, data in events if name == "result"]
    assert [r["index"] for r in results] == [0, 1] and [r["seed"] for r in results] == [7, 8]
    assert results[0]["raw_url"].endswith("/results/0.raw")
    last_progress = [data for name, data in events if name == "progress"][-1]
    assert last_progress == {
        "id": job_id,
        "step": 3,
        "total_steps": 3,
        "preview_url": f"/v1/jobs/{job_id}/preview.png",
    }
    done = events[-1][1]
    assert done["state"] == "done" and len(done["results"]) == 2


def test_live_subscriber_sees_every_step(client, fake_engine):
    fake_engine.step_delay = 0.05
    job_id = submit(client, job_params(steps=4))["id"]
    events = read_events(client, job_id)
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps) and steps[-1] == 4


def test_late_subscriber_gets_the_history(client):
    job_id = submit(client, job_params())["id"]
    wait_job(client, job_id)
    names = [name for name, _ in read_events(client, job_id)]
    assert names == ["queued", "started", "progress", "result", "done"]


def test_resume_with_last_event_id_and_after_the_end(client):
    job_id = submit(client, job_params())["id"]
    wait_job(client, job_id)
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        ids = [line[4:] for line in response.iter_lines() if line.startswith("id: ")]
    resumed = read_events(client, job_id, headers={"Last-Event-ID": ids[2]})
    assert [name for name, _ in resumed] == ["result", "done"]
    # Resuming after the terminal event ends at once instead of hanging.
    assert read_events(client, job_id, headers={"Last-Event-ID": ids[-1]}) == []


def test_keepalive_pings_while_waiting(client, fake_engine):
    fake_engine.step_delay = 0.35  # keepalive_s is 0.2 in tests
    job_id = submit(client, job_params(steps=2))["id"]
    events = read_events(client, job_id, keep_comments=True)
    assert (":", {}) in events
    assert events[-1][0] == "done"


def test_failed_and_cancelled_end_the_stream(client, fake_engine):
    fake_engine.fail_next = RuntimeError("boom")
    job_id = submit(client, job_params())["id"]
    events = read_events(client, job_id)
    assert events[-1][0] == "failed"
    assert events[-1][1]["error"]["code"] == "internal_error"


def test_results_on_disk_after_client_disconnects_mid_stream(server, fake_engine):
    fake_engine.step_delay = 0.1
    with server.client() as http:
        job_id = submit(http, job_params(steps=5, batch=2))["id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            for line in response.iter_lines():
                if line.startswith("event: progress"):
                    break  # hang up in the middle of the job
    with server.client() as http:
        info = wait_job(http, job_id)
    assert info["state"] == "done"
    files = sorted(Path(server.settings.output_dir).glob(f"*_{job_id}_*.png"))
    assert len(files) == 2 and [r["file"] for r in info["results"]] == [str(f) for f in files]


def test_unknown_job_events_404(client):
    response = client.get("/v1/jobs/nope/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_many_subscribers_one_job(server, fake_engine):
    fake_engine.step_delay = 0.05
    with server.client() as http:
        job_id = submit(http, job_params(steps=3))["id"]
    clients = [httpx.Client(base_url=server.base_url, timeout=20) for _ in range(6)]
    import concurrent.futures as cf

    try:
        with cf.ThreadPoolExecutor(6) as pool:
            streams = list(pool.map(lambda c: read_events(c, job_id), clients))
    finally:
        for c in clients:
            c.close()
    assert all(s[-1][0] == "done" for s in streams)
    time.sleep(0)  # nothing left hanging: the pool joined


def test_stream_does_not_end_before_a_terminal_event_that_races_in():
    """The terminal event published between reading the history and checking 'finished'."""
    import asyncio

    from backend.api.sse import event_stream
    from backend.events import EventLog

    class RacyLog(EventLog):
        raced = False

        def since(self, seq):
            found = super().since(seq)
            if found and not self.raced:
                self.raced = True
                self.publish("done", {"state": "done"})
            return found

    log = RacyLog()
    log.publish("queued", {})
    log.publish("result", {"index": 0})

    async def collect():
        stream = event_stream(log, lambda e: e.data, keepalive_s=0.05)
        return [chunk async for chunk in stream]

    chunks = asyncio.run(asyncio.wait_for(collect(), 5))
    assert [c.split("\n")[1] for c in chunks if c.startswith("id:")] == [
        "event: queued",
        "event: result",
        "event: done",
    ]
