"""Item 3: faults. Each one fails at most its own job, clearly, and the next job succeeds.

* GPU out-of-memory raised from inside the real tiny model's denoise loop (step 1 of 2);
* any other exception from the worker, at the same place;
* the client hangs up mid-stream or mid-upload: the result is still written to disk;
* the backend process is killed mid-job: the plugin says so, the document is untouched,
  and it reconnects when the backend comes back;
* disk full on the output folder: injected portably by opening every result file on
  ``/dev/full`` (the kernel answers ENOSPC exactly as for a full disk; no root, no mounts).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import types

import httpx
import pytest
import torch
from api.fake_engine import FakeEngine
from api.harness import free_port, job_params, raw_bgra, rgba_image, serve_app, submit, wait_job

import backend.outputs

from .plugin_support import make_controller, names, new_doc, pump, wait_until
from .support import make_settings


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, tiny_engine):
    settings = make_settings(tmp_path_factory.mktemp("faults"))
    with serve_app(settings, tiny_engine) as running:
        yield running


def run_job(http: httpx.Client, **params) -> dict:
    return wait_job(http, submit(http, job_params(**params))["id"], timeout=120)


def test_gpu_out_of_memory_mid_job_fails_that_job_only(tiny_server):
    engine = tiny_server.engine
    with tiny_server.client(timeout=60) as http:
        engine.inject(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB"))
        info = run_job(http, seed=1)
        assert engine.faults_raised >= 1  # it really was raised inside the denoise loop
        assert info["state"] == "failed", info
        assert info["error"]["code"] == "out_of_memory"
        assert "memory" in info["error"]["message"] and "smaller" in info["error"]["message"]
        assert info["results"] == []
        assert http.get("/v1/health").json()["status"] == "ok"
        after = run_job(http, seed=1)
        assert after["state"] == "done" and len(after["results"]) == 1


def test_oom_as_plain_runtime_error_is_also_out_of_memory(tiny_server):
    with tiny_server.client(timeout=60) as http:
        tiny_server.engine.inject(RuntimeError("CUDA error: out of memory"))
        assert run_job(http, seed=2)["error"]["code"] == "out_of_memory"
        assert run_job(http, seed=2)["state"] == "done"


def test_worker_exception_mid_job_fails_that_job_only(tiny_server):
    with tiny_server.client(timeout=60) as http:
        tiny_server.engine.inject(ZeroDivisionError("boom in a step"))
        info = run_job(http, seed=3)
        assert info["state"] == "failed" and info["error"]["code"] == "internal_error"
        assert "boom in a step" in info["error"]["message"]
        done = run_job(http, seed=3)
        assert done["state"] == "done"
        assert http.get(done["results"][0]["url"]).status_code == 200


def test_client_hangs_up_mid_stream_result_still_on_disk(tmp_path):
    engine = FakeEngine(step_delay=0.03)
    with serve_app(make_settings(tmp_path), engine) as server:
        with server.client() as http:
            job_id = submit(http, job_params(steps=20, seed=9))["id"]
            with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: progress"):
                        break  # hang up in the middle of the job
        with server.client() as http:
            info = wait_job(http, job_id)
        assert info["state"] == "done"
        path = info["results"][0]["file"]
        assert os.path.isfile(path) and os.path.getsize(path) > 0
        assert path.startswith(str(tmp_path / "outputs"))
        assert not [p for p in os.listdir(tmp_path / "outputs") if p.startswith(".partial")]


def test_client_hangs_up_mid_upload_server_carries_on(tmp_path):
    with serve_app(make_settings(tmp_path), FakeEngine()) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(
                    b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
                    b'Content-Disposition: form-data; name="image"\r\n\r\n' + b"\x00" * 65536
                )
        with server.client() as http:
            assert http.get("/v1/health").json()["status"] == "ok"
            assert wait_job(http, submit(http, job_params())["id"])["state"] == "done"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_disk_full_fails_the_job_clearly_and_leaves_no_partial_file(tmp_path, monkeypatch):
    real_mkstemp = backend.outputs.tempfile.mkstemp

    def mkstemp_on_full_disk(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)  # every write to this file now fails with ENOSPC
        os.close(full)
        return fd, name

    out = tmp_path / "outputs"
    with serve_app(make_settings(tmp_path), FakeEngine()) as server, server.client() as http:
        monkeypatch.setattr(
            backend.outputs, "tempfile", types.SimpleNamespace(mkstemp=mkstemp_on_full_disk)
        )
        image = rgba_image(64, 64)
        params = job_params(mode="img2img", strength=0.5)
        info = wait_job(http, submit(http, params, image=raw_bgra(image))["id"])
        assert info["state"] == "failed", info
        assert info["error"]["code"] == "output_write_failed"
        assert "No space left on device" in info["error"]["message"]
        assert str(out) in info["error"]["message"]
        assert info["results"] == []
        assert list(out.iterdir()) == []  # the partial file was removed
        monkeypatch.undo()  # space freed: the next job works
        done = wait_job(http, submit(http, params, image=raw_bgra(image))["id"])
        assert done["state"] == "done" and os.path.isfile(done["results"][0]["file"])


def start_backend(port: int, out, step_delay: float) -> subprocess.Popen:
    script = os.path.join(os.path.dirname(__file__), "backend_proc.py")
    proc = subprocess.Popen(
        [sys.executable, script, str(port), str(out), str(step_delay)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "backend process exited"
        assert time.monotonic() < deadline, "backend did not start"
        time.sleep(0.1)


def test_backend_killed_mid_job_plugin_reports_and_reconnects(fake_krita, tmp_path):
    port = free_port()
    proc = start_backend(port, tmp_path / "out", step_delay=0.1)
    try:
        ctl = make_controller(fake_krita, f"http://127.0.0.1:{port}", steps="50", seed="4")
        doc = new_doc(fake_krita, fill=bytes([9, 9, 9, 255]))
        steps = []
        ctl.progress.connect(lambda step, total: steps.append(step))
        assert ctl.generate()
        wait_until(lambda: len(steps) >= 2, what="the job to be running")
        proc.send_signal(signal.SIGKILL)  # the backend dies mid-job
        proc.wait(10)
        wait_until(lambda: ctl.state != "generating", what="the plugin to notice")
        assert ctl.state == "error"
        assert "diffusion-layers serve" in ctl.last_error  # says how to bring it back
        assert names(doc) == ["Background"] and doc.undo_steps == []
        assert bytes(doc.nodeByName("Background").pixelData(0, 0, 1, 1)) == bytes([9, 9, 9, 255])
        proc = start_backend(port, tmp_path / "out", step_delay=0.0)  # it comes back
        ctl.connect_server()
        wait_until(lambda: ctl.connection.state in ("connected", "error"), what="reconnect")
        assert ctl.connection.state == "connected", ctl.connection.message
        assert ctl.generate()
        wait_until(lambda: ctl.state != "generating", what="the job after the restart")
        assert ctl.state == "preview", ctl.last_error
        pump(0.05)
    finally:
        proc.kill()
        proc.wait(10)
