"""A tiny v1 server on loopback (http.server in a thread) for the plugin's client/controller tests.

It speaks the protocol honestly enough to exercise every client path: multipart job upload
(parsed and kept for assertions), SSE events (with ids and ``Last-Event-ID``), polling, raw
results, cancel, preprocess, Bearer token, and JSON error answers. Results are solid colours so
pixels can be asserted. Faults for the resilience tests: failing the next polls (an HTTP status,
429 with Retry-After, or a reset connection), dropping event streams mid-way, going away and
coming back on the same port (``pause``/``resume``), forgetting its jobs (a restart).
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

FINAL = ("done", "failed", "cancelled")
BUILTIN_STYLE: dict[str, Any] = {
    "name": "Base",
    "checkpoints": ["tiny"],
    "loras": [{"name": "film", "weight": 0.5}],
    "prompt": "masterpiece, {prompt}",
    "negative_prompt": "blurry",
    "steps": 3,
    "cfg_scale": 5.0,
    "builtin": True,
}


def result_color(index: int) -> bytes:
    """BGRA of result ``index``: blue varies with the index, always opaque."""
    return bytes([(40 * index) % 256, 100, 200, 255])


@dataclass
class Job:
    id: str
    params: dict[str, Any]
    parts: dict[str, tuple[str, bytes]]
    state: str = "queued"
    step: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    cancelled: bool = False
    box: tuple[int, int, int, int] | None = None  # results' (x, y, w, h); None: the region
    reverse_results: bool = False  # mode "layers": list the results top layer first
    composite_error: float | None = None  # mode "layers": what the results report

    def result_box(self) -> tuple[int, int, int, int]:
        if self.box is None and self.params["mode"] == "upscale":  # round(side * factor)
            factor = self.params.get("upscale", {}).get("factor", 2.0)
            return (
                0,
                0,
                round(self.params["width"] * factor),
                round(self.params["height"] * factor),
            )
        return self.box or (0, 0, self.params["width"], self.params["height"])

    def info(self) -> dict[str, Any]:
        p = self.params
        x, y, w, h = self.result_box()
        results = []
        if self.state == "done":
            seed = p["seed"] if p.get("seed", -1) >= 0 else 1000
            layers = p["mode"] == "layers"  # N layers of one group, index 0 = bottom
            count = (p.get("layers") or 4) if layers else p.get("batch", 1)
            for i in range(count):
                results.append(
                    {
                        "index": i,
                        "seed": seed if layers else seed + i,
                        "x": x,
                        "y": y,
                        "width": w,
                        "height": h,
                        "url": f"/v1/jobs/{self.id}/results/{i}.png",
                        "raw_url": f"/v1/jobs/{self.id}/results/{i}.raw",
                        "file": None,
                        "group": self.id if layers else None,
                        "layer_index": i if layers else None,
                        "composite_error": self.composite_error if layers else None,
                    }
                )
            if layers and self.reverse_results:  # a server may list them in any order
                results.reverse()
        return {
            "id": self.id,
            "state": self.state,
            "mode": p["mode"],
            "step": self.step,
            "total_steps": p.get("steps", 20),
            "queue_position": None,
            "error": self.error,
            "results": results,
            "preview_url": f"/v1/jobs/{self.id}/preview.png" if self.step else None,
            "created_at": 1.0,
            "started_at": None,
            "finished_at": None,
        }


class V1Server:
    def __init__(self, port: int = 0) -> None:
        self.token = ""
        self.step_delay = 0.0
        self.sse = True
        self.submit_error: tuple[int, dict[str, Any]] | None = None
        self.fail_job: dict[str, Any] | None = None
        self.jobs: dict[str, Job] = {}
        self.requests: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        # Faults: the next polls answer these (status, headers); status 0 resets the connection.
        self.poll_faults: list[tuple[int, dict[str, str]]] = []
        # The next event streams each drop (connection closed) after this many events.
        self.stream_drops: list[int] = []
        self.submit_faults: list[tuple[int, dict[str, str]]] = []  # next POST /v1/jobs answers
        self.result_box: tuple[int, int, int, int] | None = None  # next jobs' results (x,y,w,h)
        self.reverse_layers = False  # mode "layers": results listed top layer first
        self.composite_error: float | None = None  # mode "layers": reported with each result
        self.last_event_ids: list[str] = []  # Last-Event-ID header of every stream request
        self.paused = False
        self.cond = threading.Condition()
        self.request_times: list[float] = []  # time.monotonic() of each entry in requests
        self.styles: dict[str, dict[str, Any]] = {"Base": BUILTIN_STYLE}  # GET/PUT/DELETE
        self.httpd = self._listen(port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> V1Server:
        self.thread.start()
        return self

    def _listen(self, port: int) -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        httpd.daemon_threads = True
        return httpd

    def stop(self) -> None:
        with self.cond:
            for job in self.jobs.values():
                job.cancelled = True
            self.cond.notify_all()
        if not self.paused:
            self.httpd.shutdown()
            self.httpd.server_close()

    def pause(self) -> None:
        """Go away: the port refuses connections and open event streams drop (jobs go on)."""
        with self.cond:
            self.paused = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def resume(self) -> None:
        """Come back on the same port, with the same jobs."""
        self.httpd = self._listen(self.httpd.server_address[1])
        self.paused = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def forget_jobs(self) -> None:
        """As after a restart: every job id is unknown from now on."""
        with self.cond:
            for job in self.jobs.values():
                job.cancelled = True
            self.jobs = {}
            self.cond.notify_all()

    def last_job(self) -> Job:
        return list(self.jobs.values())[-1]

    def _event(self, job: Job, name: str, data: dict[str, Any]) -> None:
        with self.cond:
            job.events.append((name, data))
            self.cond.notify_all()

    def run_job(self, job: Job) -> None:
        total = job.params.get("steps", 20)
        self._event(job, "started", {"id": job.id})
        job.state = "running"
        for step in range(1, total + 1):
            time.sleep(self.step_delay)
            if job.cancelled:
                job.state = "cancelled"
                self._event(job, "cancelled", {"id": job.id})
                return
            job.step = step
            self._event(
                job,
                "progress",
                {
                    "id": job.id,
                    "step": step,
                    "total_steps": total,
                    "preview_url": f"/v1/jobs/{job.id}/preview.png",
                },
            )
        if self.fail_job is not None:
            job.state, job.error = "failed", self.fail_job
            self._event(job, "failed", {"id": job.id, "error": self.fail_job})
            return
        job.state = "done"
        self._event(job, "done", job.info())


def _handler(server: V1Server) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode())

        def _error(self, status: int, code: str, message: str, field: str | None = None) -> None:
            self._json(status, {"error": {"code": code, "message": message, "field": field}})

        def _authorized(self) -> bool:
            if server.paused:  # a keep-alive connection that outlived pause(): reset it
                self._fault(0, {})
                return False
            server.requests.append((self.command, self.path))
            server.request_times.append(time.monotonic())
            if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
                self._error(401, "unauthorized", "missing or wrong token")
                return False
            return True

        def _job(self) -> Job | None:
            job = server.jobs.get(self.path.split("/")[3])
            if job is None:
                self._error(404, "job_not_found", "no such job")
            return job

        def do_GET(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            path = self.path
            if path == "/v1/health":
                self._json(
                    200,
                    {
                        "status": "ok",
                        "ready": True,
                        "version": "test",
                        "protocol": 1,
                        "device": "cpu",
                        "dtype": "float32",
                        "model": "tiny",
                        "queue_length": 0,
                        "capabilities": ["txt2img", "sse", "raw-images"],
                        "error": None,
                    },
                )
            elif path == "/v1/models":
                self._json(
                    200,
                    {
                        "default": "tiny",
                        "checkpoints": [{"name": "tiny", "family": "sd15", "inpaint": False}],
                        "controlnets": [],
                        "loras": [{"name": "film", "family": "sd15"}],
                        "samplers": ["euler_a", "dpmpp_2m_karras"],
                        "upscalers": [
                            {"name": "4x-Sharp.pth", "scale": 4, "architecture": "ESRGAN"},
                            {
                                "name": "2x-pickle.pth",
                                "scale": 2,
                                "problem": "needs --allow-pickle",
                            },
                        ],
                    },
                )
            elif path == "/v1/styles":
                self._json(200, {"styles": list(server.styles.values())})
            elif path.startswith("/v1/jobs/"):
                job = self._job()
                if job is None:
                    return
                if path.endswith("/events"):
                    self._events(job)
                elif path.endswith(".raw"):
                    index = int(path.rsplit("/", 1)[1].split(".")[0])
                    _x, _y, w, h = job.result_box()
                    self._send(
                        200,
                        result_color(index) * (w * h),
                        "application/octet-stream",
                        {"X-Width": str(w), "X-Height": str(h)},
                    )
                elif path.endswith("/preview.png"):
                    buffer = io.BytesIO()
                    Image.new("RGB", (8, 8), (200, 100, 0)).save(buffer, "PNG")
                    self._send(200, buffer.getvalue(), "image/png")
                elif server.poll_faults:
                    self._fault(*server.poll_faults.pop(0))
                else:
                    self._json(200, job.info())
            else:
                self._error(404, "not_found", f"no route {path}")

        def _fault(self, status: int, headers: dict[str, str]) -> None:
            if status == 0:  # connection reset: RST instead of an answer
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            codes = {429: "rate_limited", 503: "queue_full"}
            body = {"error": {"code": codes.get(status, "internal"), "message": "injected"}}
            self._send(status, json.dumps(body).encode(), headers=headers)

        def _events(self, job: Job) -> None:
            if not server.sse:
                self._error(404, "not_found", "no event stream here")
                return
            last = self.headers.get("Last-Event-ID", "")
            server.last_event_ids.append(last)
            drop_after = server.stream_drops.pop(0) if server.stream_drops else -1
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            sent = int(last) if last.isdigit() else 0  # event ids are 1-based positions
            self.wfile.write(b": ping\n\n")
            self.wfile.flush()
            while True:
                with server.cond:
                    while sent >= len(job.events) and not job.cancelled and not server.paused:
                        server.cond.wait(0.5)
                    pending = job.events[sent:]
                    if server.paused:
                        self.close_connection = True
                        return
                for name, data in pending:
                    if drop_after == 0:
                        self.close_connection = True  # dropped mid-way, no final event
                        return
                    drop_after -= 1
                    sent += 1
                    text = f"id: {sent}\nevent: {name}\ndata: {json.dumps(data)}\n\n"
                    self.wfile.write(text.encode())
                    self.wfile.flush()
                    if name in FINAL:
                        self.close_connection = True
                        return
                if job.cancelled and not pending:
                    return

        def _read_parts(self) -> dict[str, tuple[str, bytes]]:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            return {
                p.get_param("name", header="content-disposition"): (
                    p.get_content_type(),
                    p.get_payload(decode=True),
                )
                for p in message.iter_parts()
            }

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            parts = self._read_parts()
            params = json.loads(parts["params"][1])
            if self.path == "/v1/preprocess":
                w, h = params["width"], params["height"]
                raw = parts["image"][1]
                image = Image.frombytes("RGBA", (w, h), raw, "raw", "BGRA").convert("L")
                image = Image.eval(image, lambda v: 255 - v)
                buffer = io.BytesIO()
                image.save(buffer, "PNG")
                self._send(200, buffer.getvalue(), "image/png")
                return
            if server.submit_faults:
                self._fault(*server.submit_faults.pop(0))
                return
            if server.submit_error is not None:
                status, body = server.submit_error
                self._json(status, body)
                return
            for name, (ctype, data) in parts.items():
                if name == "params" or ctype == "image/png":  # files carry their own size
                    continue
                per_pixel = 1 if ctype == "image/x-raw-gray8" else 4
                if len(data) != params["width"] * params["height"] * per_pixel:
                    self._error(422, "invalid_image", f"part {name} has the wrong size", name)
                    return
            job = Job(
                uuid.uuid4().hex[:12],
                params,
                parts,
                box=server.result_box,
                reverse_results=server.reverse_layers,
                composite_error=server.composite_error,
            )
            server.jobs[job.id] = job
            server._event(job, "queued", {"id": job.id})
            threading.Thread(target=server.run_job, args=(job,), daemon=True).start()
            self._json(202, {"id": job.id, "state": "queued", "queue_position": 0})

        def do_PUT(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            name = urllib.parse.unquote(self.path.rsplit("/", 1)[1])
            style = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if server.styles.get(name, {}).get("builtin"):
                self._error(409, "style_builtin", f"'{name}' is a built-in style.", "name")
            elif style.get("name") != name:
                self._error(422, "invalid_style", "the name does not match the URL", "name")
            else:
                server.styles[name] = dict(style, builtin=False)
                self._json(200, server.styles[name])

        def do_DELETE(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            if self.path.startswith("/v1/styles/"):
                name = urllib.parse.unquote(self.path.rsplit("/", 1)[1])
                if name not in server.styles:
                    self._error(404, "style_not_found", f"There is no style '{name}'.", "name")
                elif server.styles[name].get("builtin"):
                    self._error(409, "style_builtin", f"'{name}' is a built-in style.", "name")
                else:
                    del server.styles[name]
                    self._send(204, b"")
                return
            job = self._job()
            if job is None:
                return
            server.deleted.append(job.id)
            with server.cond:
                job.cancelled = True
                server.cond.notify_all()
            self._json(200, job.info())

    return Handler
