"""DELETE /v1/jobs/{id}: queued jobs at once, running ones within a step, finished ones no-op."""

from __future__ import annotations

import time

from .harness import job_params, read_events, submit, wait_job


def test_cancel_queued_job_at_once(client, fake_engine):
    fake_engine.step_delay = 0.2
    running = submit(client, job_params(steps=10))["id"]
    queued = submit(client, job_params(steps=2))
    assert queued["queue_position"] == 1
    response = client.delete(f"/v1/jobs/{queued['id']}")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert client.get(f"/v1/jobs/{queued['id']}").json()["state"] == "cancelled"
    assert [n for n, _ in read_events(client, queued["id"])] == ["queued", "cancelled"]
    client.delete(f"/v1/jobs/{running}")
    assert wait_job(client, running)["state"] == "cancelled"


def test_cancel_running_job_within_one_step(client, fake_engine, server):
    fake_engine.step_delay = 0.1
    job_id = submit(client, job_params(steps=100))["id"]
    assert fake_engine.started.wait(5)
    time.sleep(0.15)
    started = time.monotonic()
    client.delete(f"/v1/jobs/{job_id}")
    info = wait_job(client, job_id, timeout=5)
    assert info["state"] == "cancelled"
    assert time.monotonic() - started < 1.0  # one step is 0.1 s
    assert 0 < info["step"] < 100 and info["results"] == []
    assert not list(__import__("pathlib").Path(server.settings.output_dir).glob(f"*{job_id}*"))
    # The worker is free again.
    fake_engine.step_delay = 0.0
    assert wait_job(client, submit(client, job_params())["id"])["state"] == "done"


def test_cancel_is_idempotent_on_finished_jobs(client):
    job_id = submit(client, job_params())["id"]
    assert wait_job(client, job_id)["state"] == "done"
    for _ in range(2):
        response = client.delete(f"/v1/jobs/{job_id}")
        assert response.status_code == 200 and response.json()["state"] == "done"
    cancelled = submit(client, job_params(steps=1))["id"]
    client.delete(f"/v1/jobs/{cancelled}")
    final = wait_job(client, cancelled)["state"]
    assert final in ("cancelled", "done")  # it may have finished before the DELETE landed
    second = client.delete(f"/v1/jobs/{cancelled}")
    assert second.status_code == 200 and second.json()["state"] == final


def test_cancel_unknown_job_404(client):
    response = client.delete("/v1/jobs/0123456789abcdef")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "id"


def test_queue_positions_and_health_queue_length(client, fake_engine):
    fake_engine.step_delay = 0.2
    ids = [submit(client, job_params(steps=5))["id"] for _ in range(3)]
    assert client.get("/v1/health").json()["queue_length"] == 3
    positions = [client.get(f"/v1/jobs/{i}").json()["queue_position"] for i in ids]
    assert positions[1:] == [1, 2]
    for job_id in reversed(ids):
        client.delete(f"/v1/jobs/{job_id}")
    assert all(wait_job(client, i)["state"] == "cancelled" for i in ids)
