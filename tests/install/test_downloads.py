"""backend/downloads.py against a fake Hub on loopback: progress, resume, hashes, errors."""

from __future__ import annotations

import hashlib
import io
import os
import socket

import pytest

from backend import downloads
from backend.downloads import DownloadProgress, TerminalProgressBar, download_file

SIZE = 3 * 1024 * 1024 + 123  # a few MiB chunks plus a ragged tail


def payload(size: int = SIZE, salt: bytes = b"") -> bytes:
    block = hashlib.sha256(b"diffusion-layers" + salt).digest()
    return (block * (size // len(block) + 1))[:size]


def test_download_reports_progress_and_verifies_the_pinned_hash(fake_hub, tmp_path) -> None:
    content = payload()
    digest = fake_hub.add("model.safetensors", content)
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "checkpoints" / "model.safetensors"

    result = download_file(
        fake_hub.plain_url("model.safetensors"),
        dest,
        sha256=digest,
        on_progress=lambda p: seen.append((p.done, p.total)),
    )

    assert dest.read_bytes() == content
    assert result.sha256 == digest and result.verified_against == "pinned"
    assert result.size == SIZE and result.attempts == 1 and not result.resumed
    assert seen[0] == (0, SIZE) and seen[-1] == (SIZE, SIZE)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) >= 4  # reported per chunk, not only at the end
    assert not (tmp_path / "checkpoints" / "model.safetensors.part").exists()


def test_dropped_connection_is_resumed_with_range(fake_hub, tmp_path) -> None:
    content = payload()
    digest = fake_hub.add("cn.safetensors", content)
    fake_hub.state.drop_after["cn.safetensors"] = [1_000_000]
    dest = tmp_path / "cn.safetensors"

    result = download_file(
        fake_hub.plain_url("cn.safetensors"), dest, sha256=digest, retry_wait_s=0
    )

    assert dest.read_bytes() == content
    assert result.resumed and result.attempts == 2
    ranges = [r["range"] for r in fake_hub.requests_for("/plain/cn.safetensors")]
    assert ranges[0] is None
    assert ranges[1] == "bytes=1000000-"  # only the missing part was asked for


def test_interrupted_download_keeps_part_then_next_call_resumes(fake_hub, tmp_path) -> None:
    content = payload()
    digest = fake_hub.add("big.bin", content)
    fake_hub.state.drop_after["big.bin"] = [700_000]
    dest = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"

    with pytest.raises(downloads.NetworkUnavailable) as failure:
        download_file(fake_hub.plain_url("big.bin"), dest, sha256=digest, retries=0)

    assert "700000 bytes are kept" in str(failure.value)
    assert not dest.exists()  # nothing partial under the final name
    assert part.stat().st_size == 700_000

    result = download_file(fake_hub.plain_url("big.bin"), dest, sha256=digest)

    assert result.resumed and dest.read_bytes() == content and not part.exists()
    assert fake_hub.requests_for("/plain/big.bin")[-1]["range"] == "bytes=700000-"


def test_server_that_ignores_range_restarts_the_file(fake_hub, tmp_path) -> None:
    content = payload()
    digest = fake_hub.add("f.bin", content)
    fake_hub.state.drop_after["f.bin"] = [500_000]
    fake_hub.state.ignore_range = True
    dest = tmp_path / "f.bin"

    result = download_file(fake_hub.plain_url("f.bin"), dest, sha256=digest, retry_wait_s=0)

    assert dest.read_bytes() == content  # not 500 KB of prefix + the whole file again
    assert not result.resumed and result.attempts == 2


def test_corrupted_file_is_rejected_and_nothing_is_left(fake_hub, tmp_path) -> None:
    fake_hub.add("m.safetensors", payload())
    wrong = hashlib.sha256(b"something else").hexdigest()
    dest = tmp_path / "m.safetensors"

    with pytest.raises(downloads.HashMismatch) as failure:
        download_file(fake_hub.plain_url("m.safetensors"), dest, sha256=wrong)

    assert failure.value.expected == wrong
    assert failure.value.actual == hashlib.sha256(payload()).hexdigest()
    assert "mismatch" in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_hub_lfs_etag_is_the_reference_when_nothing_is_pinned(fake_hub, tmp_path) -> None:
    content = payload(200_000)
    digest = fake_hub.add("x.safetensors", content)

    result = download_file(fake_hub.resolve_url("x.safetensors"), tmp_path / "x.safetensors")

    assert result.verified_against == "hub-etag" and result.sha256 == digest
    assert (tmp_path / "x.safetensors").read_bytes() == content


def test_wrong_hub_etag_rejects_the_file(fake_hub, tmp_path) -> None:
    fake_hub.add("x.safetensors", payload(200_000))
    fake_hub.state.wrong_etag = True

    with pytest.raises(downloads.HashMismatch):
        download_file(fake_hub.resolve_url("x.safetensors"), tmp_path / "x.safetensors")

    assert list(tmp_path.iterdir()) == []


def test_no_reference_hash_is_reported_as_unverified(fake_hub, tmp_path) -> None:
    fake_hub.add("readme.txt", b"plain git file")

    result = download_file(fake_hub.plain_url("readme.txt"), tmp_path / "readme.txt")

    assert result.verified_against is None
    assert (tmp_path / "readme.txt").read_bytes() == b"plain git file"


def test_token_goes_to_the_hub_but_not_to_the_cdn_it_redirects_to(fake_hub, tmp_path) -> None:
    fake_hub.add("gated.safetensors", payload(50_000))
    fake_hub.state.redirect_host = "localhost"  # another host name, same server

    download_file(
        fake_hub.resolve_url("gated.safetensors"),
        tmp_path / "gated.safetensors",
        token="hf_secret_token",
    )

    resolve, cdn = fake_hub.state.requests
    assert resolve["authorization"] == "Bearer hf_secret_token"
    assert cdn["path"].startswith("/cdn/") and cdn["authorization"] is None


def test_token_is_read_from_hf_token(fake_hub, tmp_path, monkeypatch) -> None:
    fake_hub.add("g.bin", b"abc")
    monkeypatch.setenv("HF_TOKEN", "hf_from_environment")

    download_file(fake_hub.plain_url("g.bin"), tmp_path / "g.bin")

    assert fake_hub.state.requests[0]["authorization"] == "Bearer hf_from_environment"


@pytest.mark.parametrize(("status", "hint"), [(401, "HF_TOKEN"), (403, "HF_TOKEN"), (404, "not")])
def test_http_errors_name_the_cause(fake_hub, tmp_path, status, hint) -> None:
    fake_hub.add("e.bin", b"x")
    fake_hub.state.status["e.bin"] = status

    with pytest.raises(downloads.RemoteFileError) as failure:
        download_file(fake_hub.resolve_url("e.bin"), tmp_path / "e.bin", retry_wait_s=0)

    assert failure.value.status == status
    assert hint in str(failure.value) and f"HTTP {status}" in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_fails_fast_and_plainly(tmp_path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(downloads.NetworkUnavailable) as failure:
        download_file(f"http://127.0.0.1:{port}/m.bin", tmp_path / "m.bin", retry_wait_s=0)

    assert "reachable" in str(failure.value)
    assert not (tmp_path / "m.bin").exists()


def test_present_file_with_matching_pin_is_not_downloaded_again(fake_hub, tmp_path) -> None:
    digest = fake_hub.add("done.bin", b"complete")
    (tmp_path / "done.bin").write_bytes(b"complete")

    result = download_file(fake_hub.plain_url("done.bin"), tmp_path / "done.bin", sha256=digest)

    assert result.skipped and fake_hub.state.requests == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "ftp://host/file"}, "url="),
        ({"sha256": "abc"}, "sha256="),
        ({"retries": -1}, "retries="),
    ],
)
def test_bad_arguments_name_the_parameter(tmp_path, kwargs, named) -> None:
    call = {"url": "http://127.0.0.1:1/x", "dest": tmp_path / "x"} | kwargs
    with pytest.raises(downloads.DownloadError, match=named):
        download_file(**call)


def test_progress_bar_draws_on_a_terminal_and_logs_plainly_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, log = Tty(), io.StringIO()
    for stream in (tty, log):
        bar = TerminalProgressBar(stream=stream, width=10, min_interval_s=0)
        for done in range(0, 1001, 50):
            bar(DownloadProgress("model.safetensors", done, 1000))

    assert "\r" in tty.getvalue()
    assert "[##########] 100%" in tty.getvalue()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 11  # one line per 10%
    assert lines[-1].startswith("model.safetensors [##########] 100% 1000 B/1000 B")


def test_sha256_file_matches_hashlib(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(payload(100_001))
    assert (
        downloads.sha256_file(path, chunk_size=4096) == hashlib.sha256(payload(100_001)).hexdigest()
    )
    assert os.path.getsize(path) == 100_001
