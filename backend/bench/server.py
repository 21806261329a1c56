"""Our side of the benchmark: the real server on loopback and a client that times jobs.

``RunningServer`` starts ``create_app(settings, engine)`` on uvicorn in a thread (a real
socket on 127.0.0.1, a free port), with the real ``Engine`` loading the benchmark models
through its normal loader. ``TimedEngine`` wraps that engine only to record how long each
``generate``/``preprocess`` call took inside the engine (the transfer scenario subtracts it).
``BenchClient.run_job`` times one job end to end: POST /v1/jobs -> SSE until done -> GET the
result (raw BGRA or PNG) -> decoded pixels. ``BenchClient.live_frame`` times one live frame:
POST /v1/live/{session}/frames with a raw BGRA canvas -> the frame itself in the answer.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from backend.protocol import PNG, RAW_BGRA, RAW_GRAY

log = logging.getLogger(__name__)

FINAL_EVENTS = ("done", "failed", "cancelled")


class BenchError(RuntimeError):
    """A benchmark step failed (the server answered an error, a job failed...)."""


class TimedEngine:
    """Delegates everything to ``engine``; records the seconds spent in generate/preprocess."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.generate_s: list[float] = []
        self.preprocess_s: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, request: Any, on_progress: Any = None, cancel: Any = None) -> Any:
        start = time.perf_counter()
        try:
            return self._engine.generate(request, on_progress, cancel)
        finally:
            self.generate_s.append(time.perf_counter() - start)

    def preprocess(self, control_type: str, image: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self._engine.preprocess(control_type, image)
        finally:
            self.preprocess_s.append(time.perf_counter() - start)


class RunningServer:
    """``with RunningServer(settings, engine) as base_url:`` the real app on a loopback port."""

    def __init__(self, settings: Any, engine: Any) -> None:
        self.settings = settings
        self.engine = engine
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> str:
        import uvicorn

        from backend.api.app import create_app

        app = create_app(self.settings, self.engine)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="bench-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise BenchError("the server did not start (see the log above)")
            time.sleep(0.005)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)


def encode_part(name: str, array: np.ndarray, codec: str) -> tuple[str, bytes, str]:
    """An image part as the plugin sends it: raw (Krita's BGRA / gray bytes) or PNG."""
    if codec == "png":
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
        return (name, buffer.getvalue(), PNG)
    if array.ndim == 2:
        return (name, np.ascontiguousarray(array).tobytes(), RAW_GRAY)
    return (name, _swap_red_blue(array).tobytes(), RAW_BGRA)


def _swap_red_blue(array: np.ndarray) -> np.ndarray:
    """RGBA <-> BGRA (Krita hands the plugin BGRA already; this stands in for that copy)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGBA2BGRA)


class BenchClient:
    """Times jobs against a running server over one keep-alive HTTP connection."""

    def __init__(self, base_url: str, timeout: float = 600.0) -> None:
        import httpx

        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def wait_ready(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.http.get("/v1/health")
            if health.status_code == 200 and health.json().get("ready"):
                return
            time.sleep(0.05)
        raise BenchError(f"server not ready after {timeout:.0f} s")

    def run_job(
        self, params: dict[str, Any], inputs: dict[str, np.ndarray], codec: str = "raw"
    ) -> tuple[float, np.ndarray, int]:
        """(seconds end to end, result RGBA pixels, bytes moved) for one job."""
        start = time.perf_counter()
        # 1. Encode the parts and submit.
        files: list[tuple[str, tuple[Any, ...]]] = [
            ("params", (None, json.dumps(params).encode(), "application/json"))
        ]
        for name, array in inputs.items():
            files.append((name, encode_part(name, array, codec)))
        moved = sum(len(part[1][1]) for part in files)
        created = self.http.post("/v1/jobs", files=files)
        if created.status_code != 202:
            raise BenchError(f"POST /v1/jobs answered {created.status_code}: {created.text}")
        job_id = created.json()["id"]
        # 2. Follow the job's events until it ends.
        info = self._wait(job_id)
        if info.get("state") != "done" or not info.get("results"):
            raise BenchError(f"job {job_id} ended {info.get('state')}: {info.get('error')}")
        # 3. Fetch and decode the first layer.
        result = info["results"][0]
        url = result["raw_url"] if codec == "raw" else result["url"]
        answer = self.http.get(url)
        if answer.status_code != 200:
            raise BenchError(f"GET {url} answered {answer.status_code}")
        pixels = decode_result(answer.content, codec, result["width"], result["height"])
        return time.perf_counter() - start, pixels, moved + len(answer.content)

    def live_frame(
        self, session: str, params: dict[str, Any], image: np.ndarray
    ) -> tuple[float, np.ndarray, Mapping[str, str]]:
        """(seconds round trip, frame RGBA pixels, the answer's headers) for one live frame,
        sent as the plugin sends it: params + the region's BGRA bytes, raw frame back."""
        start = time.perf_counter()
        files: list[tuple[str, tuple[Any, ...]]] = [
            ("params", (None, json.dumps(params).encode(), "application/json")),
            ("image", encode_part("image", image, "raw")),
        ]
        answer = self.http.post(
            f"/v1/live/{session}/frames", files=files, headers={"Accept": RAW_BGRA}
        )
        if answer.status_code != 200:
            raise BenchError(
                f"POST /v1/live/{session}/frames answered {answer.status_code}: {answer.text[:300]}"
            )
        width, height = int(answer.headers["X-Width"]), int(answer.headers["X-Height"])
        pixels = decode_result(answer.content, "raw", width, height)
        return time.perf_counter() - start, pixels, answer.headers  # case-insensitive

    def close_live(self, session: str) -> dict[str, Any]:
        """End a live session; its info (frames rendered, superseded, failed)."""
        answer = self.http.delete(f"/v1/live/{session}")
        if answer.status_code != 200:
            raise BenchError(f"DELETE /v1/live/{session} answered {answer.status_code}")
        return answer.json()

    def _wait(self, job_id: str) -> dict[str, Any]:
        event = ""
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in FINAL_EVENTS:
                    return json.loads(line[5:])
        return self.http.get(f"/v1/jobs/{job_id}").json()


def decode_result(data: bytes, codec: str, width: int, height: int) -> np.ndarray:
    """RGBA pixels of a result, as the plugin would turn it into a layer."""
    if codec == "png":
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
    if len(data) != width * height * 4:
        raise BenchError(f"raw result has {len(data)} bytes for {width}x{height}")
    return _swap_red_blue(np.frombuffer(data, np.uint8).reshape(height, width, 4))
