"""Item 5, the plugin side, against the real backend app (fake engine) or a dead/black-hole one:
timeouts and retries never freeze Krita; a closed document's job is discarded; two documents
generating at once keep their results apart."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from api.fake_engine import FakeEngine
from api.harness import free_port, serve_app

from backend.api.app import create_app

from .plugin_support import make_controller, names, new_doc, pixel, pump, wait_until
from .support import make_settings


@pytest.fixture
def backend(tmp_path):
    engine = FakeEngine(step_delay=0.02)
    with serve_app(make_settings(tmp_path), engine) as running:
        yield running


class BlackHole:
    """A port that accepts connections and reads requests but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for conn in self.conns:
            conn.close()


class EventLoopWatch:
    """Counts a 10 ms QTimer's ticks and the longest gap between them: a frozen UI shows."""

    def __init__(self) -> None:
        from PyQt5.QtCore import QTimer

        self.last = time.monotonic()
        self.max_gap = 0.0
        self.ticks = 0
        self.timer = QTimer()
        self.timer.timeout.connect(self._tick)
        self.timer.start(10)

    def _tick(self) -> None:
        now = time.monotonic()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        self.ticks += 1

    def stop(self) -> None:
        self.timer.stop()


def test_hung_server_times_out_without_freezing_krita(fake_krita):
    hole = BlackHole()
    try:
        ctl = make_controller(fake_krita, hole.url)
        ctl.client.timeout_ms = ctl.client.upload_timeout_ms = 1000
        doc = new_doc(fake_krita)
        watch = EventLoopWatch()
        started = time.monotonic()
        assert ctl.generate()  # returns at once: the upload is asynchronous
        assert time.monotonic() - started < 0.5
        wait_until(lambda: ctl.state != "generating", timeout=10, what="the timeout")
        watch.stop()
        assert ctl.state == "error" and "no answer within 1 s" in ctl.last_error
        assert 0.9 < time.monotonic() - started < 10
        assert watch.ticks > 30 and watch.max_gap < 0.8  # never blocked for the 1 s timeout
        assert names(doc) == ["Background"] and doc.undo_steps == []
        ctl.connect_server()  # health: retried, then a clear error, still never blocking
        wait_until(lambda: ctl.connection.state == "error", timeout=15, what="health to give up")
        assert "no answer" in ctl.connection.message
    finally:
        hole.close()


def test_health_retries_until_the_backend_is_up(fake_krita, tmp_path):
    port = free_port()
    ctl = make_controller(fake_krita, f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        create_app(make_settings(tmp_path), FakeEngine()),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    ctl.connect_server()  # nothing listens yet: the first attempt is refused
    pump(0.1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()  # the backend comes up while the plugin retries
    try:
        wait_until(lambda: ctl.connection.state in ("connected", "error"), what="the retries")
        assert ctl.connection.state == "connected", ctl.connection.message
        wait_until(lambda: ctl.connection.models is not None, what="the model list")
    finally:
        server.should_exit = True
        thread.join(10)


def test_closed_document_job_is_cancelled_and_discarded(fake_krita, backend):
    backend.engine.step_delay = 0.05
    ctl = make_controller(fake_krita, backend.base_url, steps="40", seed="1")
    keep = new_doc(fake_krita, fill=bytes([1, 2, 3, 255]))
    closing = new_doc(fake_krita)
    steps = []
    ctl.progress.connect(lambda step, total: steps.append(step))
    assert ctl.generate()  # for `closing`, the active document
    wait_until(lambda: len(steps) >= 1, what="the job to run")
    wait_until(lambda: ctl.session().job_id is not None, what="the job id")
    job_id = ctl.session().job_id
    fake_krita.close_document(closing)
    fake_krita.set_active(keep)
    wait_until(lambda: not ctl.sessions, what="the closed document's session to go")
    with backend.client() as http:
        deadline = time.monotonic() + 10
        while http.get(f"/v1/jobs/{job_id}").json()["state"] not in ("cancelled", "done"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert http.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    pump(0.2)
    assert names(keep) == ["Background"] and keep.undo_steps == []
    assert ctl.state == "idle"
    backend.engine.step_delay = 0.0
    assert ctl.generate()  # the open document still works
    wait_until(lambda: ctl.state != "generating", what="the next job")
    assert ctl.state == "preview", ctl.last_error


def test_two_documents_generating_at_once_keep_their_results_apart(fake_krita, backend):
    # strength 0.01 img2img: the fake engine returns (almost) the document's own pixels,
    # so a result that landed in the wrong document would show the other colour.
    ctl = make_controller(fake_krita, backend.base_url, strength="0.01", seed="5")
    red = new_doc(fake_krita, fill=bytes([10, 10, 200, 255]))  # BGRA
    assert ctl.generate()
    green = new_doc(fake_krita, fill=bytes([10, 200, 10, 255]))
    assert ctl.generate()  # both jobs in flight together
    assert len(ctl.sessions) == 2
    for doc in (red, green):
        fake_krita.set_active(doc)
        wait_until(lambda: ctl.state != "generating", what="both jobs")
        assert ctl.state == "preview", ctl.last_error
    fake_krita.set_active(red)
    red_id = ctl.apply()
    fake_krita.set_active(green)
    green_id = ctl.apply()
    assert red_id and green_id and red_id != green_id
    red_layer = [n for n in red.all_nodes() if n.name() != "Background"]
    green_layer = [n for n in green.all_nodes() if n.name() != "Background"]
    assert len(red_layer) == 1 and len(green_layer) == 1
    r = pixel(red_layer[0], 20, 20)
    g = pixel(green_layer[0], 20, 20)
    assert abs(r[2] - 200) <= 5 and abs(r[1] - 10) <= 5, r
    assert abs(g[1] - 200) <= 5 and abs(g[2] - 10) <= 5, g
