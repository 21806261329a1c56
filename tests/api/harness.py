"""Test helpers: run an app on a real loopback port, build multipart jobs, read SSE streams."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from backend.api.app import create_app
from backend.outputs import encode_png
from backend.protocol import PNG, RAW_BGRA, RAW_GRAY
from backend.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    base_url: str
    app: object
    settings: Settings
    engine: object

    def client(self, token: str | None = None, timeout: float = 20.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)


@contextlib.contextmanager
def serve_app(settings: Settings, engine) -> Iterator[Server]:
    """create_app(settings, engine) on uvicorn in a thread, on a free loopback port."""
    app = create_app(settings, engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"http://127.0.0.1:{port}", app, settings, engine)
    finally:
        server.should_exit = True
        thread.join(15)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_process(args: list[str], env_extra: dict | None = None) -> Iterator[str]:
    """``python -m backend serve ARGS`` as a real process; yields its base URL once healthy."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "serve", "--port", str(port), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                httpx.get(f"{base}/v1/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not come up in 120 s") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def job_params(**overrides) -> dict:
    params = {"mode": "txt2img", "prompt": "a red fox", "width": 64, "height": 64, "steps": 2}
    params.update(overrides)
    return params


def rgba_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    image[:, :, 3] = 255
    return image


def raw_bgra(image: np.ndarray) -> tuple[str, bytes, str]:
    return ("image.raw", image[:, :, [2, 1, 0, 3]].tobytes(), RAW_BGRA)


def png_part(image: np.ndarray, name: str = "image.png") -> tuple[str, bytes, str]:
    return (name, encode_png(image), PNG)


def gray_part(mask: np.ndarray) -> tuple[str, bytes, str]:
    return ("mask.raw", np.ascontiguousarray(mask, dtype=np.uint8).tobytes(), RAW_GRAY)


def job_files(params: dict | str | bytes, **parts) -> dict:
    body = params if isinstance(params, (str, bytes)) else json.dumps(params)
    files = {"params": (None, body, "application/json")}
    files.update(parts)
    return files


def submit(client: httpx.Client, params: dict, **parts) -> dict:
    response = client.post("/v1/jobs", files=job_files(params, **parts))
    assert response.status_code == 202, response.text
    return response.json()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = client.get(f"/v1/jobs/{job_id}").json()
        if info["state"] in ("done", "failed", "cancelled"):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {info['state']} after {timeout} s")
        time.sleep(0.02)


def read_events(
    client: httpx.Client, job_id: str, headers: dict | None = None, keep_comments: bool = False
) -> list[tuple[str, dict]]:
    """All SSE events of a job until the stream ends: [(name, data)], comments as (':', {})."""
    events: list[tuple[str, dict]] = []
    name, data = None, []
    url = f"/v1/jobs/{job_id}/events"
    with client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                if keep_comments:
                    events.append((":", {}))
            elif line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif line == "" and name is not None:
                events.append((name, json.loads("\n".join(data))))
                name, data = None, []
    return events


def decode_raw_result(response: httpx.Response) -> np.ndarray:
    width, height = int(response.headers["X-Width"]), int(response.headers["X-Height"])
    bgra = np.frombuffer(response.content, dtype=np.uint8).reshape(height, width, 4)
    return bgra[:, :, [2, 1, 0, 3]]
