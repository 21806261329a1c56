"""Where the time goes when a 2048² region travels plugin -> backend -> plugin (issue 7).

``python -m tests.api.test_transfer_speed [--side 2048] [--repeats 7]`` prints the breakdown
table of docs/benchmarks/README.md ("Transfer"): each stage timed on its own in this process
(median of the repeats), then whole jobs through the real server on loopback with an engine
that hands the input back (``EchoEngine``), split at the points the client and the engine can
see. The ``slow`` test checks the whole path against a generous bound (shared CPUs are noisy;
the real numbers are in the docs, not asserted here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.api.images import decode_image
from backend.api.multipart import read_parts
from backend.engine.errors import InvalidRequest
from backend.engine.types import GenerationRequest, Layer, ResultMetadata
from backend.outputs import OutputWriter, _Compaction, rgba_to_bgra_view, write_atomic
from backend.protocol import RAW_BGRA

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import serve_app

SIDE = 2048
BOUNDARY = "transferbenchboundary0123456789"


class EchoEngine(FakeEngine):
    """img2img that returns its input image as the layer: the engine costs ~nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.returned_at: list[float] = []

    def generate(self, request, on_progress=None, cancel=None):
        if cancel is not None:
            cancel.check()
        if request.image is None:
            raise InvalidRequest("image", None, "the echo engine needs an image")
        layer = Layer(request.image, 0, 0, request.seed, metadata(request))
        self.returned_at.append(time.perf_counter())
        return [layer]


def metadata(request: GenerationRequest) -> ResultMetadata:
    return ResultMetadata(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=request.seed,
        model=request.model or "tiny",
        sampler=request.sampler,
        steps=request.steps,
        cfg_scale=request.cfg_scale,
        strength=request.strength,
        mode=request.mode,
        width=request.width,
        height=request.height,
    )


def painting(side: int) -> np.ndarray:
    """Gradients plus mild noise, RGBA: closer to a canvas than noise or a flat colour."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:side, 0:side]
    rgb = np.stack([xx * 255 // side, yy * 255 // side, (xx ^ yy) & 255], -1)
    rgb = rgb + rng.integers(0, 16, (side, side, 3))
    alpha = np.full((side, side, 1), 255)
    return np.concatenate([rgb, alpha], -1).clip(0, 255).astype(np.uint8)


def params(side: int) -> dict:
    return {"mode": "img2img", "prompt": "a red fox", "width": side, "height": side, "steps": 1}


def body(side: int, bgra: bytes) -> bytes:
    """The multipart body the plugin's QHttpMultiPart sends: params JSON + one raw part."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="params"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps(params(side))}\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"\r\n'
        f"Content-Type: {RAW_BGRA}\r\n\r\n"
    ).encode()
    return b"".join((head, bgra, f"\r\n--{BOUNDARY}--\r\n".encode()))


class _Request:
    """Just what ``read_parts`` reads of a Starlette request, fed in 64 KiB chunks."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.headers = {
            "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            "content-length": str(len(data)),
        }

    async def stream(self):
        view = memoryview(self.data)
        for start in range(0, len(view), 65536):
            yield bytes(view[start : start + 65536])


def _median_ms(fn, repeats: int, between=None) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if between is not None:
            between()
    return statistics.median(times) * 1000


def stages(side: int, repeats: int, folder: Path) -> dict[str, float]:
    """Median ms of each server/client stage on its own, in this process."""
    image = painting(side)
    bgra = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA).tobytes()
    data = body(side, bgra)
    parts = asyncio.run(read_parts(_Request(data), 1 << 31))  # type: ignore[arg-type]
    request = GenerationRequest(mode="img2img", width=side, height=side, prompt="a red fox")
    result = Layer(image=image, x=0, y=0, seed=1, metadata=metadata(request))
    out: dict[str, float] = {}
    out["client: multipart body from Krita's BGRA bytes (one copy)"] = _median_ms(
        lambda: body(side, bgra), repeats
    )
    out["server: read + split multipart"] = _median_ms(
        lambda: asyncio.run(read_parts(_Request(data), 1 << 31)),  # type: ignore[arg-type]
        repeats,
    )
    out["server: raw BGRA part -> RGBA"] = _median_ms(
        lambda: decode_image(parts["image"].view, RAW_BGRA, "image", (side, side), 1 << 31),
        repeats,
    )
    out["server: result RGBA -> BGRA view"] = _median_ms(lambda: rgba_to_bgra_view(image), repeats)
    for label, level, compact in (
        ("stored, no fsync (default; compacted after done)", 0, 1),
        ("level 1, fsync (compaction off)", 1, None),
    ):
        writer = OutputWriter(folder / f"level{level}", png_level=level, compact_level=compact)
        out[f"server: PNG file {label}"] = _median_ms(
            lambda w=writer: w.write("bench", 0, result, time.time()),
            repeats,
            writer.wait_compacted,  # jobs are seconds apart: the compactor is idle again
        )
        writer.close()
    compactor = OutputWriter(folder / "compact", png_level=0, compact_level=1)
    target = folder / "compact" / "one.png"
    compactor.output_dir.mkdir()
    out["after done, compactor thread: level 1 encode + fsync + replace"] = _median_ms(
        lambda: compactor._compact(  # noqa: SLF001 - the background step, timed on its own
            _Compaction(target, write_atomic(target, [b"x"], False), result)
        ),
        repeats,
    )
    out["client: BGRA result -> RGBA"] = _median_ms(
        lambda: cv2.cvtColor(
            np.frombuffer(bgra, np.uint8).reshape(side, side, 4), cv2.COLOR_BGRA2RGBA
        ),
        repeats,
    )
    return out


def end_to_end(side: int, repeats: int, folder: Path, compact: bool = True) -> dict[str, float]:
    """Median ms of whole jobs on loopback, split where the client and the engine can see."""
    engine = EchoEngine()
    image = painting(side)
    bgra = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA).tobytes()  # what Krita hands the plugin
    settings = make_settings(folder, max_request_mb=64)
    rows: dict[str, list[float]] = {}
    with serve_app(settings, engine) as server, server.client(timeout=60) as http:
        bare = BareHttp(server.base_url)
        if not compact:  # the file is written at level 1 and fsynced before done
            queue = server.app.state.context.queue  # type: ignore[attr-defined]
            queue.writer.png_level, queue.writer.compact_level = 1, None
        for run in range(repeats + 1):
            t0 = time.perf_counter()
            data = body(side, bgra)
            t1 = time.perf_counter()
            headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            created = http.post("/v1/jobs", content=data, headers=headers)
            t2 = time.perf_counter()
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            info = _wait_done(http, job_id)
            t3 = time.perf_counter()
            generated = engine.returned_at[-1]
            raw = http.get(info["results"][0]["raw_url"])
            t4 = time.perf_counter()
            layer = np.frombuffer(raw.content, np.uint8).reshape(side, side, 4)  # BGRA, as Krita
            t5 = time.perf_counter()
            if layer.nbytes != len(bgra) or raw.content != bgra:
                raise AssertionError("the echoed layer differs from the uploaded region")
            # Jobs are seconds apart in real use: let the compactor finish before the next one.
            writer = server.app.state.context.queue.writer  # type: ignore[attr-defined]
            writer.wait_compacted()
            # The same upload and download with the bare client: the server's share.
            t6 = time.perf_counter()
            status, _, answer = bare.request("POST", "/v1/jobs", data, headers["Content-Type"])
            t7 = time.perf_counter()
            assert status == 202, answer
            info2 = _wait_done(http, json.loads(answer)["id"])
            t8 = time.perf_counter()
            status, _, pixels = bare.request("GET", info2["results"][0]["raw_url"])
            t9 = time.perf_counter()
            assert status == 200 and pixels == bgra
            writer.wait_compacted()
            if run == 0:
                continue  # warm-up
            for name, seconds in (
                ("client: build body", t1 - t0),
                ("POST /v1/jobs until 202 (upload, parse, decode, checks)", t2 - t1),
                ("engine returns -> client sees done (BGRA, PNG file, events)", t3 - generated),
                ("GET .raw (16 MiB)", t4 - t3),
                ("client: wrap the BGRA result", t5 - t4),
                ("total", t5 - t0),
                ("bare client: POST until 202", t7 - t6),
                ("bare client: GET .raw", t9 - t8),
                ("bare client: total (build, POST, done, GET)", t1 - t0 + t9 - t6),
            ):
                rows.setdefault(name, []).append(seconds * 1000)
        bare.close()
    return {name: statistics.median(values) for name, values in rows.items()}


class BareHttp:
    """A minimal HTTP/1.1 keep-alive client on one socket, reading bodies with ``recv_into``
    into one buffer: it stands in for Qt's C++ networking, which costs next to nothing, so
    the rows measured with it are the server's share (httpx spends ~30 ms per 16 MiB)."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.rsplit("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str, body: bytes = b"", ctype: str = "") -> tuple:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        self.sock.sendall(head.encode() + b"\r\n")
        if body:
            self.sock.sendall(body)
        # 1. Status line and headers.
        raw = b""
        while b"\r\n\r\n" not in raw:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError("server closed the connection")
            raw += more
        head_bytes, _, rest = raw.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        # 2. The body (Content-Length framing: our server sets it on these routes).
        size = int(headers["content-length"])
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = len(rest)
        view[:got] = rest
        while got < size:
            got += self.sock.recv_into(view[got:], min(size - got, 1 << 22))
        return status, headers, buffer


def _wait_done(http, job_id: str) -> dict:
    event = ""
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("done", "failed", "cancelled"):
                info = json.loads(line[5:])
                assert info["state"] == "done", info
                return info
    raise AssertionError(f"job {job_id}: the event stream ended without a final event")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_2048_round_trip_overhead_is_bounded(tmp_path):
    """Whole 2048² jobs on loopback, pixels exact; generous bound (goal 60 ms, see docs)."""
    timings = end_to_end(SIDE, 3, tmp_path)
    print("\n" + json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1))
    assert timings["total"] < 2000, timings
    files = list((tmp_path / "outputs").glob("*.png"))
    assert len(files) == 2 * 4  # (warm-up + 3 runs) x (httpx job + bare-client job)
    assert all(f.stat().st_size < SIDE * SIDE * 4 for f in files)  # all compacted


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--side", type=int, default=SIDE)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"stages, {args.side}², median of {args.repeats} (ms):")
        for name, ms in stages(args.side, args.repeats, Path(folder)).items():
            print(f"  {name:62s} {ms:8.1f}")
        for compact in (True, False):
            sub = Path(folder) / f"e2e{compact}"
            how = "stored + compaction (default)" if compact else "level 1 + fsync before done"
            print(f"end to end on loopback, result file {how} (ms):")
            for name, ms in end_to_end(args.side, args.repeats, sub, compact).items():
                print(f"  {name:62s} {ms:8.1f}")


if __name__ == "__main__":
    main()
