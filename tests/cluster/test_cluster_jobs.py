"""The v1 API as a Ray Serve application: jobs, results, spread and routing by checkpoint."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.api.harness import decode_raw_result, job_params, submit

from .conftest import TOKENS, sse_events, wait_job

pytestmark = pytest.mark.cluster


def run_jobs(http, params_list: list[dict]) -> list[dict]:
    ids = [submit(http, params)["id"] for params in params_list]
    return [wait_job(http, job_id, timeout=180) for job_id in ids]


def test_job_runs_and_its_result_is_on_disk_before_done(cluster):
    with cluster.client(TOKENS["ana"]) as http:
        job = run_jobs(http, [job_params(seed=7)])[0]
        assert job["state"] == "done", job
        result = job["results"][0]
        raw = decode_raw_result(http.get(result["raw_url"]))
        assert raw.shape == (64, 64, 4) and raw[:, :, 3].min() == 255
        png = http.get(result["url"])
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        with open(result["file"], "rb") as handle:
            assert handle.read() == png.content
        assert np.ptp(raw[:, :, :3]) > 0  # real pixels, not a blank placeholder


def test_jobs_spread_across_both_replicas(cluster):
    """While the replica holding a checkpoint is busy, jobs on that checkpoint waiting in the
    queue go to the other, idle replica (which loads it) instead of queueing behind the busy one.

    No timing luck: the long job outlasts loading the checkpoint on the other replica many
    times over (384 px, batch 8, 150 steps, no hires pass: minutes, where a tiny load takes
    seconds) and is cancelled as soon as the short jobs are done. Were the short jobs routed to
    the busy holder, they would finish only after it (or time out): the test fails."""
    model = "tiny-inpaint"  # the earlier tests leave "tiny" loaded: the other replica must load
    with cluster.client(TOKENS["ana"]) as http:
        long_params = job_params(
            model=model, seed=1, steps=150, width=384, height=384, batch=8, hires=False
        )
        long_id = submit(http, long_params)["id"]
        deadline = time.monotonic() + 120
        while (record := cluster.record(long_id))["step"] < 1:
            assert record["state"] in ("queued", "running"), record
            assert time.monotonic() < deadline, f"the long job did not start: {record}"
            time.sleep(0.1)
        busy = record["replica"]
        short = run_jobs(http, [job_params(model=model, seed=s, steps=2) for s in range(3)])
        long_state = cluster.record(long_id)["state"]
        http.delete(f"/v1/jobs/{long_id}")
        long_end = wait_job(http, long_id)["state"]
    assert [j["state"] for j in short] == ["done"] * 3, short
    assert long_state == "running", "the short jobs waited for the busy replica"
    assert long_end == "cancelled", long_end
    ran_on = {cluster.record(j["id"])["replica"] for j in short}
    assert busy not in ran_on and len(ran_on) == 1, (busy, ran_on)


def test_events_replay_with_last_event_id(cluster):
    with cluster.client(TOKENS["ana"]) as http:
        job_id = submit(http, job_params(seed=3))["id"]
        events = sse_events(http, job_id)
        names = [name for _, name, _ in events]
        assert names[0] == "queued" and names[-1] == "done" and "result" in names, names
        tail = sse_events(http, job_id, last_event_id=events[1][0])
        # Progress events replace each other in the history: the replay has the latest one.
        assert tail[0][0] > events[1][0] and [e[0] for e in tail[-2:]] == [
            e[0] for e in events[-2:]
        ]
        assert [name for _, name, _ in tail[-2:]] == ["result", "done"]
        assert tail[-1][2]["results"][0]["width"] == 64


def test_routing_follows_the_checkpoint(cluster):
    """Pairs of jobs on two checkpoints: each checkpoint keeps to the replica holding it."""
    ran: dict[str, set[str]] = {"tiny": set(), "tiny-inpaint": set()}
    with cluster.client(TOKENS["ana"]) as http:
        for round_ in range(4):
            params = [job_params(model=m, seed=round_) for m in ran]
            for model, job in zip(ran, run_jobs(http, params), strict=True):
                assert job["state"] == "done", job
                if round_ > 0:  # the first round loads the models
                    ran[model].add(cluster.record(job["id"])["replica"])
    assert all(len(replicas) == 1 for replicas in ran.values()), ran
    assert ran["tiny"] != ran["tiny-inpaint"], ran


def test_cancel_through_any_ingress(cluster):
    with cluster.client(TOKENS["ana"]) as http:
        job_id = submit(http, job_params(steps=150))["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{job_id}").json()["step"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 200
        assert wait_job(http, job_id, timeout=60)["state"] == "cancelled"


def test_the_cluster_serves_the_committed_openapi_schema(cluster):
    import json
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "backend" / "api" / "openapi.json"
    with cluster.client(TOKENS["ana"]) as http:
        assert http.get("/openapi.json").json() == json.loads(committed.read_text())
        assert http.get("/v1/health").json()["status"] == "ok"
    with cluster.client("not-a-token-at-all") as stranger:
        assert stranger.get("/v1/health").status_code == 401
