"""Raw BGRA vs PNG upload of a 2048x2048 image on loopback (numbers in docs/protocol.md).

Run as a script for the table: ``python -m tests.api.test_upload_speed``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from backend.outputs import encode_png
from backend.protocol import PNG, RAW_BGRA

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import job_files, job_params, serve_app

SIDE = 2048


def painting(side: int) -> np.ndarray:
    """Smooth gradients plus mild noise: closer to a real canvas than pure noise."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    rng = np.random.default_rng(0)
    image = np.empty((side, side, 4), dtype=np.uint8)
    image[..., 0] = (xx / side * 255).astype(np.uint8)
    image[..., 1] = (yy / side * 255).astype(np.uint8)
    image[..., 2] = (128 + 60 * np.sin(xx / 50) + rng.integers(0, 16, (side, side))).astype(
        np.uint8
    )
    image[..., 3] = 255
    return image


def measure(http, engine, image: np.ndarray, codec: str, repeats: int = 2) -> dict:
    """Best-of-N seconds for client encode and for the POST until 202 (server decode incl.)."""
    best = {"encode_s": float("inf"), "upload_s": float("inf"), "bytes": 0}
    params = job_params(mode="img2img", width=image.shape[1], height=image.shape[0], steps=1)
    for _ in range(repeats):
        start = time.perf_counter()
        if codec == PNG:
            data = encode_png(image, compress_level=1)
        else:
            data = np.ascontiguousarray(image[..., [2, 1, 0, 3]]).tobytes()
        encoded = time.perf_counter()
        response = http.post("/v1/jobs", files=job_files(params, image=("image", data, codec)))
        done = time.perf_counter()
        assert response.status_code == 202, response.text
        http.delete(f"/v1/jobs/{response.json()['id']}")
        best["encode_s"] = min(best["encode_s"], encoded - start)
        best["upload_s"] = min(best["upload_s"], done - encoded)
        best["bytes"] = len(data)
    return best


def run(tmp_path: Path, side: int = SIDE) -> dict[str, dict]:
    engine = FakeEngine(step_delay=1.0)  # jobs get cancelled long before they finish
    with serve_app(make_settings(tmp_path), engine) as server, server.client() as http:
        image = painting(side)
        return {codec: measure(http, engine, image, codec) for codec in (RAW_BGRA, PNG)}


def test_raw_upload_beats_png_at_2048(tmp_path):
    timings = run(tmp_path)
    raw, png = timings[RAW_BGRA], timings[PNG]
    print(f"\n2048x2048 upload on loopback: raw {raw}, png {png}")
    assert raw["bytes"] == SIDE * SIDE * 4
    assert raw["encode_s"] + raw["upload_s"] < png["encode_s"] + png["upload_s"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        for codec, row in run(Path(folder)).items():
            total = row["encode_s"] + row["upload_s"]
            print(
                f"{codec:20s} {row['bytes'] / 2**20:7.1f} MiB  encode {row['encode_s'] * 1000:6.0f} ms"
                f"  upload+decode {row['upload_s'] * 1000:6.0f} ms  total {total * 1000:6.0f} ms"
            )
