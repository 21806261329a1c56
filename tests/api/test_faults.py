"""Failures inside jobs fail that job clearly and the server keeps serving."""

from __future__ import annotations

import os

import pytest

from .conftest import make_settings
from .fake_engine import FakeEngine, out_of_memory
from .harness import job_params, serve_app, submit, wait_job


def test_out_of_memory_fails_the_job_only(client, fake_engine):
    fake_engine.fail_next = out_of_memory()
    info = wait_job(client, submit(client, job_params())["id"])
    assert info["state"] == "failed"
    assert info["error"]["code"] == "out_of_memory"
    assert "memory" in info["error"]["message"]
    assert client.get("/v1/health").json()["status"] == "ok"
    assert wait_job(client, submit(client, job_params())["id"])["state"] == "done"


def test_unexpected_exception_is_internal_error(client, fake_engine):
    fake_engine.fail_next = ZeroDivisionError("division by zero")
    info = wait_job(client, submit(client, job_params())["id"])
    assert info["error"]["code"] == "internal_error"
    assert wait_job(client, submit(client, job_params())["id"])["state"] == "done"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_dir_fails_clearly_permissions(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    with serve_app(make_settings(tmp_path, output_dir=str(out)), FakeEngine()) as server:
        with server.client() as http:
            info = wait_job(http, submit(http, job_params())["id"])
    assert info["state"] == "failed" and info["error"]["code"] == "output_write_failed"


def test_output_path_not_a_directory_fails_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = make_settings(tmp_path, output_dir=str(blocker / "outputs"))
    with serve_app(settings, FakeEngine()) as server:
        with server.client() as http:
            info = wait_job(http, submit(http, job_params())["id"])
            assert info["state"] == "failed"
            assert info["error"]["code"] == "output_write_failed"
            assert "could not write" in info["error"]["message"]
            assert info["results"] == []
            assert http.get("/v1/health").json()["status"] == "ok"


def test_preload_reports_loading_then_ready(tmp_path):
    engine = FakeEngine(preload_delay=0.5)
    settings = make_settings(tmp_path, preload=True, default_model="tiny")
    with serve_app(settings, engine) as server:
        with server.client() as http:
            first = http.get("/v1/health").json()
            assert (first["status"], first["ready"]) == ("loading", False)
            job = submit(http, job_params())  # accepted, runs after the preload
            assert wait_job(http, job["id"])["state"] == "done"
            health = http.get("/v1/health").json()
            assert (health["status"], health["ready"], health["model"]) == ("ok", True, "tiny")


def test_preload_failure_is_reported(tmp_path):
    engine = FakeEngine()
    engine.preload_error = RuntimeError("weights corrupt")
    settings = make_settings(tmp_path, preload=True)
    with serve_app(settings, engine) as server:
        with server.client() as http:
            for _ in range(100):
                health = http.get("/v1/health").json()
                if health["status"] != "loading":
                    break
                __import__("time").sleep(0.02)
            assert health["status"] == "error" and "weights corrupt" in health["error"]


def test_queue_full_is_503(tmp_path):
    engine = FakeEngine(step_delay=0.2)
    with serve_app(make_settings(tmp_path, max_queue=2), engine) as server:
        with server.client() as http:
            ids = [submit(http, job_params(steps=5))["id"]]
            assert engine.started.wait(5)
            ids += [submit(http, job_params(steps=5))["id"] for _ in range(2)]
            response = http.post(
                "/v1/jobs",
                files={"params": (None, '{"mode":"txt2img","width":64,"height":64}')},
            )
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "queue_full"
            for job_id in ids:
                http.delete(f"/v1/jobs/{job_id}")
