"""Fairness between artists in the single-process server: round-robin per client, per-artist
queued-job limits, one revocable token per artist (tokens file)."""

from __future__ import annotations

import time

import pytest

from backend.api.tokens import TokensFileError, TokenTable, parse_tokens
from backend.fair_queue import FairQueue

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import job_params, serve_app, submit


def test_fair_queue_round_robins_between_clients_and_keeps_each_clients_order():
    queue: FairQueue[str] = FairQueue()
    for i in range(5):
        queue.append("ana", f"a{i}")
    queue.append("ben", "b0")
    queue.append("ben", "b1")
    queue.append("cat", "c0")
    assert queue.order() == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]
    assert queue.index("c0") == 2 and len(queue) == 8 and queue.count("ana") == 5
    assert [queue.popleft() for _ in range(3)] == ["a0", "b0", "c0"]
    queue.append("cat", "c1")  # cat rejoins the rotation at its end
    assert queue.order() == ["a1", "b1", "c1", "a2", "a3", "a4"]
    assert queue.remove("b1") and not queue.remove("b1")
    assert queue.count("ben") == 0 and "b1" not in queue
    queue.appendleft("ana", "again")
    assert queue.popleft() == "again"
    queue.clear()
    assert not queue and len(queue) == 0
    with pytest.raises(IndexError):
        queue.popleft()


def _client(server, client_id: str):
    http = server.client()
    http.headers["X-Client-Id"] = client_id
    return http


def test_one_artists_batch_of_50_does_not_starve_another(tmp_path):
    engine = FakeEngine(step_delay=0.05)
    with serve_app(make_settings(tmp_path, rate_limit_per_s=0), engine) as server:
        with _client(server, "ana") as ana, _client(server, "ben") as ben:
            batch = [submit(ana, job_params(seed=i))["id"] for i in range(50)]
            created = submit(ben, job_params(seed=99))
            assert created["queue_position"] <= 2  # behind at most ana's running + next job
            deadline = time.monotonic() + 60
            while (info := ben.get(f"/v1/jobs/{created['id']}").json())["state"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            ana_jobs = [ana.get(f"/v1/jobs/{j}").json() for j in batch]
            assert sum(j["state"] != "done" for j in ana_jobs) > 10, "the batch ran too fast"
            # Started between ben's submit and ben's start: at most the one ana had next.
            jumped = [
                j
                for j in ana_jobs
                if j["started_at"] and info["created_at"] < j["started_at"] < info["started_at"]
            ]
            assert len(jumped) <= 1, f"ben waited for {len(jumped)} of ana's jobs"
            for job_id in batch:
                ana.delete(f"/v1/jobs/{job_id}")


def test_queue_positions_follow_the_fair_order(tmp_path):
    engine = FakeEngine(step_delay=0.2)
    with serve_app(make_settings(tmp_path, rate_limit_per_s=0), engine) as server:
        with _client(server, "ana") as ana, _client(server, "ben") as ben:
            first = submit(ana, job_params())["id"]
            assert engine.started.wait(10)
            a_jobs = [submit(ana, job_params(seed=i))["id"] for i in range(3)]
            b_job = submit(ben, job_params())["id"]
            positions = {j: ana.get(f"/v1/jobs/{j}").json()["queue_position"] for j in a_jobs}
            assert ana.get(f"/v1/jobs/{b_job}").json()["queue_position"] == 2
            assert sorted(positions.values()) == [1, 3, 4]
            for job_id in [first, *a_jobs, b_job]:
                ana.delete(f"/v1/jobs/{job_id}")


def test_per_artist_queued_job_limit(tmp_path):
    settings = make_settings(tmp_path, rate_limit_per_s=0, max_queued_per_client=2)
    engine = FakeEngine(step_delay=0.5)
    with serve_app(settings, engine) as server:
        with _client(server, "ana") as ana, _client(server, "ben") as ben:
            running = submit(ana, job_params())["id"]
            assert engine.started.wait(10)
            queued = [submit(ana, job_params(seed=i))["id"] for i in range(2)]
            refused = ana.post(
                "/v1/jobs",
                files={
                    "params": (
                        None,
                        '{"mode":"txt2img","prompt":"x","width":64,"height":64,"steps":2}',
                        "application/json",
                    )
                },
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "queue_full"
            assert "per-artist limit" in refused.json()["error"]["message"]
            submit(ben, job_params())  # another artist is not affected
            for job_id in [running, *queued]:
                ana.delete(f"/v1/jobs/{job_id}")


def test_tokens_file_names_artists_and_revoking_a_line_locks_that_artist_out(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# studio\nana ana-secret-1\nben ben-secret-2  # the second artist\n")
    settings = make_settings(tmp_path, tokens_file=str(tokens), max_queued_per_client=1)
    engine = FakeEngine(step_delay=0.5)
    with serve_app(settings, engine) as server:
        assert server.client().get("/v1/health").status_code == 401
        with server.client("ana-secret-1") as ana, server.client("ben-secret-2") as ben:
            assert ana.get("/v1/health").status_code == 200
            submit(ana, job_params())
            assert engine.started.wait(10)
            submit(ana, job_params())
            # The limit is per token: ana is full, ben (same address) is not.
            assert ana.post("/v1/jobs", files=_params()).status_code == 503
            submit(ben, job_params())
            tokens.write_text("ana ana-secret-1\n")  # revoke ben
            assert ben.get("/v1/health").status_code == 401
            assert ana.get("/v1/health").status_code == 200


def _params() -> dict:
    body = '{"mode":"txt2img","prompt":"x","width":64,"height":64,"steps":2}'
    return {"params": (None, body, "application/json")}


def test_tokens_file_errors_name_the_line_and_never_open_the_server(tmp_path):
    with pytest.raises(TokensFileError, match="line 2"):
        parse_tokens("ana ana-secret-1\nben\n")
    with pytest.raises(TokensFileError, match="too short"):
        parse_tokens("ana short\n")
    path = tmp_path / "tokens.txt"
    path.write_text("broken line here\n")
    table = TokenTable(None, path)
    assert table.required and table.match("Bearer broken-line-here") is None
    path.unlink()
    assert table.required and table.match("Bearer anything-at-all") is None
    path.write_text("cat cat-secret-3\n")
    assert table.match("Bearer cat-secret-3") == "cat"
    assert table.match("Basic cat-secret-3") is None
