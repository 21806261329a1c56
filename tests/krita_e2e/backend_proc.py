"""The real backend as a child process (tiny model, CPU) that tests can stop and restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it spawned."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers the leader left behind
    except ProcessLookupError:
        pass


class BackendProcess:
    """``python -m backend serve --model tiny --device cpu`` on a fixed free port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.output_dir = workdir / "outputs"
        self.log_path = workdir / "backend.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> None:
        """Start (or restart) on the same port and wait until /v1/health says ready."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        command = [
            sys.executable, "-m", "backend", "serve", "--model", "tiny", "--device", "cpu",
            "--host", "127.0.0.1", "--port", str(self.port), "--output-dir", str(self.output_dir),
        ]  # fmt: skip
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"backend exited with code {self.proc.returncode} before it was ready; "
                    f"log:\n{self.log_tail()}"
                )
            try:
                health = self.health()
                if health.get("ready"):
                    return
                last = json.dumps(health)
            except (OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"backend not ready after {timeout_s}s (last: {last}); log:\n{self.log_tail()}"
        )

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no backend log)"

    def output_texts(self) -> list[dict]:
        """Every result's metadata in the output folder: JSON files and PNG text chunks."""
        from PIL import Image

        found = []
        for path in sorted(self.output_dir.rglob("*")):
            if path.suffix == ".json":
                found.append({"file": str(path), "text": path.read_text(errors="replace")})
            elif path.suffix == ".png":
                with Image.open(path) as image:
                    chunks = {
                        k: str(v) for k, v in (image.info or {}).items() if k != "icc_profile"
                    }
                found.append({"file": str(path), "text": json.dumps(chunks)})
        return found
