"""Network resilience of the plugin against the loopback v1 server with injected faults.

A job survives failed polls (5xx, 503, reset connections), waits out a 429's Retry-After,
resumes a dropped event stream with Last-Event-ID, and keeps its identity while the server is
away; only a bounded window of failures (or a server that lost the job) fails it, with the
document unchanged. The connection reconnects by itself, with backoff, while it is needed.
Retry windows and delays are shortened so the whole file runs in seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import krita
import pytest
from diffusion_layers.client import Client
from diffusion_layers.connection import Connection
from diffusion_layers.controller import Controller
from diffusion_layers.errors import BackendError, ConnectionFailed
from diffusion_layers.job_watch import (
    FATAL,
    JOB_LOST,
    RATE_LIMITED,
    REFUSED,
    TRANSIENT,
    JobWatch,
    RetryPolicy,
    backoff_ms,
    classify,
)
from plugin_helpers import pump, wait_until
from test_plugin_controller import make_controller, names, new_doc, pixel
from v1_server import V1Server, result_color

FAST = RetryPolicy(
    window_ms=3000, refused_window_ms=1500, first_ms=20, max_ms=200, poll_ms=20, stream_resumes=3
)
STOPPED = "The server stopped while generating; nothing was changed."
GREY = bytes([9, 9, 9, 255])


@pytest.fixture
def server() -> Iterator[V1Server]:
    srv = V1Server().start()
    yield srv
    srv.stop()


def fast_controller(app: krita.Krita, url: str, **settings: str) -> Controller:
    ctl = make_controller(app, url, prompt="a red fox", seed="42", **settings)
    ctl.client.retry_policy = RetryPolicy(**FAST.__dict__)
    ctl.connection.reconnect_first_ms = 20
    ctl.connection.reconnect_max_ms = 80
    return ctl


@pytest.fixture
def ctl(fake_krita: krita.Krita, server: V1Server) -> Controller:
    return fast_controller(fake_krita, server.url)


def polls(server: V1Server, job_id: str) -> list[int]:
    """Indexes into server.requests of the plain GET /v1/jobs/{id} requests."""
    return [i for i, r in enumerate(server.requests) if r == ("GET", f"/v1/jobs/{job_id}")]


def finish(ctl: Controller, state: str, timeout: float = 10.0) -> None:
    wait_until(lambda: ctl.state != "generating", timeout=timeout, what="the job to end")
    assert ctl.state == state, ctl.last_error


def assert_untouched(doc: krita.Document) -> None:
    assert names(doc) == ["Background"] and doc.undo_steps == []
    background = doc.nodeByName("Background")
    assert background is not None and pixel(background, 3, 3) == GREY


# -- pure policy -------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_ms(n, 1000, 30000) for n in range(7)] == [
        1000,
        2000,
        4000,
        8000,
        16000,
        30000,
        30000,
    ]
    assert backoff_ms(500, 1000, 30000) == 30000  # no overflow on long outages


def test_failures_are_classified_by_what_retrying_can_fix() -> None:
    rate = BackendError("slow down", "rate_limited", 429)
    rate.retry_after = 3
    assert classify(rate) == (RATE_LIMITED, 3000)
    assert classify(BackendError("x", "queue_full", 503))[0] == TRANSIENT
    assert classify(BackendError("x", "internal", 500))[0] == TRANSIENT
    assert classify(ConnectionFailed("x", "network"))[0] == TRANSIENT
    assert classify(ConnectionFailed("x", "timeout"))[0] == TRANSIENT
    assert classify(ConnectionFailed("x", "refused"))[0] == REFUSED
    assert classify(BackendError("x", "job_not_found", 404))[0] == JOB_LOST
    assert classify(BackendError("x", "invalid_params", 422))[0] == FATAL


def test_bad_retry_policy_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="window_ms.*-1"):
        RetryPolicy(window_ms=-1).check()
    with pytest.raises(ValueError, match="stream_resumes"):
        RetryPolicy(stream_resumes=-2).check()


# -- the job watch -----------------------------------------------------------------------------


def test_failed_polls_are_retried_and_the_job_still_delivers(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.sse = False  # polling only
    server.poll_faults = [(503, {}), (0, {}), (500, {}), (502, {})]  # 0: connection reset
    doc = new_doc(fake_krita, fill=GREY)
    assert ctl.generate()
    finish(ctl, "preview")
    assert server.poll_faults == []  # every fault was served, and each one retried
    assert len(polls(server, server.last_job().id)) >= 5
    assert len(server.jobs) == 1  # the same job, never resubmitted
    preview = [n for n in doc.all_nodes() if n.name().startswith("[Preview]")]
    assert len(preview) == 1 and pixel(preview[0], 10, 10) == result_color(0)


def test_429_waits_for_retry_after(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.sse = False
    server.poll_faults = [(429, {"Retry-After": "1"})]
    new_doc(fake_krita, fill=GREY)
    assert ctl.generate()
    finish(ctl, "preview")
    first, second = polls(server, server.last_job().id)[:2]
    gap = server.request_times[second] - server.request_times[first]
    assert 0.95 <= gap < 3.0, gap  # waited Retry-After, not the 20 ms backoff


def test_persistent_errors_give_up_after_the_window(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    ctl.client.retry_policy = RetryPolicy(window_ms=500, first_ms=20, max_ms=100, poll_ms=20)
    server.sse = False
    server.poll_faults = [(503, {})] * 10000
    doc = new_doc(fake_krita, fill=GREY)
    started = time.monotonic()
    assert ctl.generate()
    finish(ctl, "error")
    assert 0.3 < time.monotonic() - started < 5
    assert "queue_full" in ctl.last_error or "injected" in ctl.last_error
    assert "nothing was changed" in ctl.last_error
    assert len(polls(server, server.last_job().id)) >= 4  # retried, with backoff
    assert_untouched(doc)


def test_refused_uploads_are_retried_but_a_reset_one_is_not(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    doc = new_doc(fake_krita, fill=GREY)
    server.submit_faults = [(503, {}), (429, {"Retry-After": "0"}), (503, {})]
    assert ctl.generate()
    finish(ctl, "preview")
    posts = [r for r in server.requests if r == ("POST", "/v1/jobs")]
    assert len(posts) == 4 and len(server.jobs) == 1  # 3 refusals retried, one job made
    ctl.discard()
    # Reset mid-upload: the job may exist, so the plugin does not upload again (Qt itself
    # resends once when a reused keep-alive connection turns out closed).
    server.submit_faults = [(0, {})] * 3
    assert ctl.generate()
    finish(ctl, "error")
    assert "diffusion-layers serve" in ctl.last_error
    assert len(server.submit_faults) >= 1 and len(server.jobs) == 1
    assert names(doc) == ["Background"]


def test_dropped_stream_resumes_after_the_last_event(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.03
    server.stream_drops = [3]  # queued, started, progress 1, then the connection closes
    new_doc(fake_krita, fill=GREY)
    steps: list[int] = []
    ctl.progress.connect(lambda step, total: steps.append(step))
    assert ctl.generate()
    finish(ctl, "preview")
    # Resumed right after event 3 (Qt may transparently resend a request once).
    assert list(dict.fromkeys(server.last_event_ids)) == ["", "3"]
    assert steps == [1, 2]  # every progress event exactly once (steps=2)
    job = server.last_job()
    assert polls(server, job.id) == polls(server, job.id)[-1:]  # only the final read


def test_stream_that_keeps_dropping_falls_back_to_polling(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.05
    server.stream_drops = [1] * 10
    new_doc(fake_krita, fill=GREY)
    watches: list[JobWatch] = []
    watch = ctl.client.watch
    ctl.client.watch = lambda *args: watches.append(watch(*args)) or watches[-1]  # type: ignore[method-assign]
    assert ctl.generate()
    finish(ctl, "preview")
    assert len(watches) == 1 and watches[0].resumes == 3 and watches[0].polling
    assert list(dict.fromkeys(server.last_event_ids)) == ["", "1", "2", "3"]
    assert len(polls(server, server.last_job().id)) >= 1
    assert len(ctl.results) == 1


def test_server_away_and_back_keeps_the_job_and_fetches_its_results(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.05
    doc = new_doc(fake_krita, fill=GREY)
    seen: list[str] = []
    ctl.connection.changed.connect(lambda: seen.append(ctl.connection.state))
    steps: list[int] = []
    ctl.progress.connect(lambda step, total: steps.append(step))
    ctl.update_settings(steps=8)
    assert ctl.generate()
    wait_until(lambda: len(steps) >= 1, what="the job to run")
    job_id = server.last_job().id
    server.pause()  # the server goes away: stream drops, connections refused
    wait_until(lambda: "error" in seen, what="the docker to show the server as lost")
    assert ctl.state == "generating"  # ...while the job waits for it
    pump(0.3)
    server.resume()
    finish(ctl, "preview")
    assert list(server.jobs) == [job_id]  # the same job, its results fetched after reconnect
    assert any(r == ("GET", f"/v1/jobs/{job_id}/results/0.raw") for r in server.requests)
    wait_until(lambda: ctl.connection.state == "connected", what="the automatic reconnect")
    preview = [n for n in doc.all_nodes() if n.name().startswith("[Preview]")]
    assert len(preview) == 1 and pixel(preview[0], 10, 10) == result_color(0)


def test_server_killed_mid_job_says_so_then_generation_works_again(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.05
    ctl.update_settings(steps=40)
    ctl.connection.want("docker", True)  # the docker is visible
    doc = new_doc(fake_krita, fill=GREY)
    steps: list[int] = []
    ctl.progress.connect(lambda step, total: steps.append(step))
    assert ctl.generate()
    wait_until(lambda: len(steps) >= 1, what="the job to run")
    server.pause()  # killed, and it stays down past the retry window
    finish(ctl, "error", timeout=15)
    assert ctl.last_error.startswith(STOPPED), ctl.last_error
    assert "diffusion-layers serve" in ctl.last_error
    assert_untouched(doc)
    assert ctl.connection.state == "error" and ctl.connection.reconnecting
    server.forget_jobs()
    server.resume()  # it comes back: no Connect click needed
    wait_until(lambda: ctl.connection.state == "connected", what="the automatic reconnect")
    wait_until(lambda: ctl.connection.models is not None, what="the model list")
    ctl.update_settings(steps=2)
    server.step_delay = 0.0
    assert ctl.generate()
    finish(ctl, "preview")
    assert names(doc)[0] == "Background" and len(names(doc)) == 2


def test_restarted_server_that_lost_the_job_fails_it_cleanly(
    ctl: Controller, server: V1Server, fake_krita: krita.Krita
) -> None:
    server.step_delay = 0.05
    ctl.update_settings(steps=40)
    doc = new_doc(fake_krita, fill=GREY)
    steps: list[int] = []
    ctl.progress.connect(lambda step, total: steps.append(step))
    assert ctl.generate()
    wait_until(lambda: len(steps) >= 1, what="the job to run")
    server.pause()
    server.forget_jobs()  # a restart: the in-memory job is gone
    pump(0.1)
    server.resume()
    finish(ctl, "error")
    assert ctl.last_error.startswith(STOPPED) and "no longer knows this job" in ctl.last_error
    assert_untouched(doc)


# -- the connection ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reconnect_backs_off_while_needed_and_connects_when_the_server_appears(
    qapp: object,
) -> None:
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}")
    conn = Connection(client)
    conn.reconnect_first_ms, conn.reconnect_max_ms = 30, 120
    delays: list[int] = []
    conn.changed.connect(lambda: delays.append(conn.next_retry_ms))
    conn.want("docker", True)
    ticks: list[float] = [time.monotonic()]
    from diffusion_layers.qt import QTimer

    tick = QTimer()
    tick.timeout.connect(lambda: ticks.append(time.monotonic()))
    tick.start(10)
    conn.connect_server()
    wait_until(lambda: conn.attempts >= 5, what="five failed probes")
    assert conn.state == "error" and "Retrying in" in conn.message
    assert [d for d in delays if d][:5] == [30, 60, 120, 120, 120]  # exponential, capped
    server = V1Server(port).start()  # the backend comes up
    try:
        wait_until(lambda: conn.state == "connected", what="the reconnect")
        wait_until(lambda: conn.models is not None, what="the model list")
        assert conn.attempts == 0 and not conn.reconnecting
        assert conn.models is not None and conn.models.default == "tiny"
    finally:
        tick.stop()
        server.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) < 0.5  # the UI thread never blocked while probing


def test_no_probes_when_nobody_needs_the_server(qapp: object) -> None:
    port = free_port()
    conn = Connection(Client(f"http://127.0.0.1:{port}"))
    conn.reconnect_first_ms = 20
    conn.want("docker", True)
    conn.connect_server()
    wait_until(lambda: conn.attempts >= 2, what="probes while the docker is visible")
    conn.want("docker", False)  # docker hidden, no job pending
    assert not conn.reconnecting
    attempts = conn.attempts
    pump(0.2)
    assert conn.attempts == attempts


def test_docker_visibility_drives_reconnects(ctl: Controller) -> None:
    from diffusion_layers.ui.docker import DockerPanel

    panel = DockerPanel(ctl)
    panel.show()
    assert ctl.connection.wanted
    panel.hide()
    assert not ctl.connection.wanted
    panel.deleteLater()
