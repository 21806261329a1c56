"""Fixtures for the real-Krita tier (marker ``krita``).

``launch_krita(label, scenarios, settings)`` runs one Krita launch and returns a
:class:`~.harness.KritaRun`; tests assert on ``run.scenario(name)``. A failing test gets the
Krita log and the backend log attached to its report.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest

from .backend_proc import BackendProcess, free_port
from .harness import KritaRun, artifacts_root, find_krita, run_krita

HERE = Path(__file__).resolve().parent
DEFAULT_PROMPT = "a red apple on a wooden table"


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.krita)


def pytest_terminal_summary(terminalreporter) -> None:
    """Repeat the missing-Krita warning where nobody can miss it (captured output is not)."""
    krita, xvfb, why = find_krita()
    if krita and xvfb:
        return
    message = f"REAL-KRITA TESTS NOT RUN: {why}"
    terminalreporter.write_sep("!", message, red=True, bold=True)
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, KritaRun):
                report.sections.append((f"Krita launch {value.label}", value.logs()))


@pytest.fixture(scope="session")
def krita_available() -> None:
    """Skip LOUDLY without Krita; fail instead when DL_REQUIRE_KRITA=1 (CI)."""
    krita, xvfb, why = find_krita()
    if krita and xvfb:
        return
    message = f"REAL-KRITA TESTS NOT RUN: {why} (install: apt-get install krita xvfb)"
    if os.environ.get("DL_REQUIRE_KRITA") == "1":
        pytest.fail(message + "; DL_REQUIRE_KRITA=1 makes this a failure", pytrace=False)
    print(f"\nWARNING: {message}", file=sys.stderr, flush=True)
    warnings.warn(message, stacklevel=1)
    pytest.skip(message)


@pytest.fixture(scope="session")
def e2e_backend(krita_available, tmp_path_factory):
    """The real backend (tiny model, CPU) shared by every launch; restartable on its port."""
    backend = BackendProcess(tmp_path_factory.mktemp("backend"))
    try:
        backend.start()
        yield backend
    finally:
        backend.stop()
        folder = artifacts_root() / "krita_e2e"
        folder.mkdir(parents=True, exist_ok=True)
        if backend.log_path.exists():
            shutil.copy2(backend.log_path, folder / "backend.log")


def plugin_settings(server_url: str, **overrides) -> dict[str, str]:
    """The plugin's [diffusion_layers] kritarc group: fast, reproducible generations."""
    settings = {
        "server_url": server_url,
        "token": "",
        "model": "",
        "prompt": DEFAULT_PROMPT,
        "negative_prompt": "blurry",
        "strength": "1.0",
        "steps": "2",
        "cfg_scale": "5.0",
        "seed": "1234",
        "batch": "1",
    }
    for key, value in overrides.items():
        settings[key] = value if isinstance(value, str) else json.dumps(value)
    return settings


@pytest.fixture(scope="session")
def launch_krita(krita_available, tmp_path_factory):
    """``launch(label, scenarios, settings, backend=None, timeout_s=300) -> KritaRun``."""
    template = tmp_path_factory.mktemp("krita-template")

    def launch(
        label: str,
        scenarios: list[str],
        settings: dict[str, str],
        backend: BackendProcess | None = None,
        timeout_s: float = 300.0,
    ) -> KritaRun:
        def control(command: str) -> dict:
            if backend is None:
                raise RuntimeError("no backend attached to this launch")
            if command == "backend_stop":
                backend.stop()
            elif command == "backend_start":
                backend.start()
            else:
                raise ValueError(f"unknown harness command {command!r}")
            return {"url": backend.url}

        home = tmp_path_factory.mktemp(f"home-{label}")
        return run_krita(
            label,
            scenarios,
            home,
            settings,
            timeout_s=timeout_s,
            control=control,
            backend_log=backend.log_tail if backend else None,
            template=template,
        )

    return launch


@pytest.fixture(scope="session")
def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def refine_run(launch_krita, e2e_backend) -> KritaRun:
    """Strength 0.5, 2 steps: refine the whole canvas, then the backend goes down and back up."""
    settings = plugin_settings(e2e_backend.url, strength="0.5")
    return launch_krita("refine", ["refine", "backend_down"], settings, e2e_backend)
