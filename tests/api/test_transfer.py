"""The transfer path's behaviour (fast tier): the multipart splitter, the two-phase result
file (stored before done, compacted after) and whole raw round trips on loopback."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from backend.api.errors import ApiError
from backend.api.multipart import MAX_PARTS, split_parts
from backend.engine.metadata import read_png_metadata
from backend.engine.types import Layer
from backend.outputs import OutputWriter, rgba_to_bgra, rgba_to_bgra_view
from backend.protocol import RAW_BGRA

from .conftest import make_settings
from .harness import serve_app
from .test_transfer_speed import BOUNDARY, EchoEngine, body, metadata, painting

B = b"bNd"


def form(*parts: tuple[str, bytes, str | None], preamble: bytes = b"") -> bytes:
    out = [preamble]
    for name, data, ctype in parts:
        head = f'--bNd\r\nContent-Disposition: form-data; name="{name}"\r\n'
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        out += [head.encode(), b"\r\n", data, b"\r\n"]
    out.append(b"--bNd--\r\n")
    return b"".join(out)


def test_split_keeps_bytes_types_and_shares_the_buffer():
    tricky = bytes(range(256)) * 3 + b"--bNd" + b"\r\n--bN" + b"\r\n\r\n"  # boundary-like bytes
    data = bytearray(form(("params", b"{}", "application/json"), ("image", tricky, RAW_BGRA)))
    parts = split_parts(data, B)
    assert list(parts) == ["params", "image"]
    assert parts["params"].data == b"{}" and parts["params"].content_type == "application/json"
    assert parts["image"].view.tobytes() == tricky and parts["image"].content_type == RAW_BGRA
    assert parts["image"].view.obj is data  # a view into the request buffer, not a copy


def test_split_accepts_preamble_empty_parts_and_default_type():
    data = form(("a", b"", None), ("b", b"x", None), preamble=b"ignored\r\n")
    parts = split_parts(data, B)
    assert parts["a"].size == 0 and parts["b"].data == b"x"
    assert parts["b"].content_type == "text/plain"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"no boundary at all", "opening boundary"),
        (b'--bNd\r\nContent-Disposition: form-data; name="a"\r\n\r\nxyz', "truncated"),
        (b"--bNd\r\nno colon here\r\n\r\nx\r\n--bNd--", "header"),
        (b"--bNd\r\nContent-Type: a/b\r\n\r\nx\r\n--bNd--", "name"),
        (b"--bNdjunk\r\n\r\nx\r\n--bNd--", "boundary line"),
        (form(("a", b"1", None), ("a", b"2", None)), "twice"),
        (form(*[(f"p{i}", b"", None) for i in range(MAX_PARTS + 1)]), "parts"),
    ],
)
def test_split_refuses_malformed_bodies_with_400(data, needle):
    with pytest.raises(ApiError) as caught:
        split_parts(data, B)
    assert caught.value.status == 400 and needle in str(caught.value)


def layer(side: int = 96, x: int = 5, y: int = 7) -> Layer:
    from backend.engine.types import GenerationRequest

    request = GenerationRequest(
        mode="img2img", width=side, height=side, prompt="ein Fuchs 狐", seed=9
    )
    return Layer(image=painting(side), x=x, y=y, seed=9, metadata=metadata(request))


def png_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def test_result_file_is_complete_before_compaction_and_smaller_after(tmp_path):
    writer = OutputWriter(tmp_path, png_level=0, compact_level=1)
    result = layer()
    path = writer.write("job1", 0, result, time.time())
    stored = path.stat().st_size
    # 1. Readable at once (what exists before ``done``): exact pixels and the metadata.
    assert stored > 96 * 96 * 4
    assert np.array_equal(png_pixels(path), result.image)
    assert "Seed: 9" in read_png_metadata(path.read_bytes())["parameters"]
    # 2. After compaction: same pixels and text, fewer bytes, no temporary files left.
    assert writer.wait_compacted(30)
    assert writer.compacted == 1 and path.stat().st_size < stored
    assert np.array_equal(png_pixels(path), result.image)
    with Image.open(path) as image:
        assert image.text["parameters"].startswith("ein Fuchs 狐\n")
        assert '"offset": {"x": 5, "y": 7}' in image.text["diffusion_layers"]
    assert sorted(os.listdir(tmp_path)) == [path.name]
    writer.close()
    writer.close()  # idempotent


def test_compaction_does_not_bring_back_a_moved_file(tmp_path):
    writer = OutputWriter(tmp_path / "out", png_level=0, compact_level=1)
    writer._idle.acquire()  # noqa: SLF001 - hold the compactor until the file is gone
    try:
        path = writer.write("job2", 0, layer(), time.time())
        path.rename(tmp_path / "kept.png")
    finally:
        writer._idle.release()  # noqa: SLF001
    assert writer.wait_compacted(30)
    assert not path.exists() and writer.compacted == 0
    assert np.array_equal(png_pixels(tmp_path / "kept.png"), layer().image)
    writer.close()


def test_without_compaction_the_file_is_written_at_its_level(tmp_path):
    writer = OutputWriter(tmp_path, png_level=1, compact_level=None)
    path = writer.write("job3", 0, layer(), time.time())
    assert writer.compact_level is None and writer.wait_compacted(0)
    assert path.stat().st_size < 96 * 96 * 4
    assert np.array_equal(png_pixels(path), layer().image)
    with pytest.raises(ValueError, match="png_level"):
        OutputWriter(tmp_path, png_level=10)


def test_bgra_view_matches_the_channel_swap():
    image = painting(16)
    view = rgba_to_bgra_view(image)
    assert view.nbytes == 16 * 16 * 4
    assert bytes(view) == np.ascontiguousarray(image[:, :, [2, 1, 0, 3]]).tobytes()
    assert np.array_equal(rgba_to_bgra(image)[..., 0], image[..., 2])
    with pytest.raises(ValueError, match="image"):
        rgba_to_bgra(image[..., :3])


@pytest.mark.parametrize("chunked", [False, True])
def test_raw_round_trip_on_loopback_is_exact(tmp_path, chunked):
    side = 256
    image = painting(side)
    bgra = rgba_to_bgra(image).tobytes()
    data = body(side, bgra)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    content = (data[i : i + 50_000] for i in range(0, len(data), 50_000)) if chunked else data
    with serve_app(make_settings(tmp_path), EchoEngine()) as server, server.client() as http:
        created = http.post("/v1/jobs", content=content, headers=headers)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 20
        while (info := http.get(f"/v1/jobs/{job_id}").json())["state"] != "done":
            assert info["state"] in ("queued", "running") and time.monotonic() < deadline, info
            time.sleep(0.01)
        result = info["results"][0]
        raw = http.get(result["raw_url"])
        assert raw.status_code == 200 and raw.content == bgra  # exact, in Krita's layout
        assert raw.headers["X-Width"] == raw.headers["X-Height"] == str(side)
        png = http.get(result["url"])  # the compacted file's final bytes
        assert png.status_code == 200
        assert png.content == open(result["file"], "rb").read()
        with Image.open(io.BytesIO(png.content)) as opened:
            assert np.array_equal(np.asarray(opened.convert("RGBA")), image)
            assert f"Seed: {result['seed']}" in opened.text["parameters"]
        assert len(png.content) < side * side * 4  # compacted, not the stored copy
