"""Stopping the server mid-job: the job fails at once with ``server_stopped`` on its open
stream, queued jobs too, and nothing is delivered (CI: a job finished during uvicorn's
graceful wait and came back as a preview after the artist had stopped the server)."""

from __future__ import annotations

import threading
import time

from backend.api.app import create_app
from backend.commands.stopping_server import stopping_server
from backend.jobs import SERVER_STOPPED

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import Server, job_params, read_events, submit


def _serve(tmp_path, engine):
    settings = make_settings(tmp_path)
    app = create_app(settings, engine)
    queue = app.state.context.queue
    server = stopping_server(app, queue.begin_stop, host="127.0.0.1", port=0, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, Server(f"http://127.0.0.1:{port}", app, settings, engine)


def test_stopping_the_server_fails_the_running_and_queued_jobs_on_their_streams(tmp_path):
    engine = FakeEngine(step_delay=0.1)
    server, thread, running = _serve(tmp_path, engine)
    with running.client(timeout=10) as client:
        job = submit(client, job_params(steps=150))["id"]  # 15 s if nothing stops it
        queued = submit(client, job_params(steps=2))["id"]
        assert engine.started.wait(5)
        events: list = []
        reader = threading.Thread(target=lambda: events.extend(read_events(client, job)))
        reader.start()
        time.sleep(0.3)
        stopped_at = time.monotonic()
        server.should_exit = True  # what SIGTERM / Ctrl+C do
        reader.join(5)
        thread.join(10)
    assert not thread.is_alive(), "the server kept waiting on the job"
    assert time.monotonic() - stopped_at < 3.0
    names = [name for name, _ in events]
    assert names[-1] == "failed" and "done" not in names and "result" not in names, names
    error = events[-1][1]["error"]
    assert error["code"] == "server_stopped" and error["message"] == SERVER_STOPPED
    assert "stopped" in SERVER_STOPPED
    queue = running.app.state.context.queue
    assert queue.get(queued).state == "failed" and queue.get(queued).error.code == "server_stopped"
    assert not list((tmp_path / "outputs").glob(f"*{job}*"))
