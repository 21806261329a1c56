"""Real Krita 5.1.5 with a Qt binding the plugin cannot use: the docker says so in one sentence.

The plugin is told to use PyQt6 (``DIFFUSION_LAYERS_QT=6``), which Debian's Krita 5 Python does
not have — the situation of a binding that cannot be loaded. Expected: Krita starts, the
"Diffusion Layers" docker exists and shows the one sentence from ``qt.py``, the plugin's
actions are absent, and Krita's log has that sentence once and no traceback.
"""

from __future__ import annotations

import subprocess

import pytest

from .conftest import plugin_settings
from .harness import clean_path


def _krita_python_has_pyqt6() -> bool:
    """Krita's Python is the first ``python3`` on the cleaned PATH (docs/testing.md)."""
    try:
        done = subprocess.run(
            ["python3", "-c", "import PyQt6.QtCore"],
            env={"PATH": clean_path("/usr/local/bin:/usr/bin:/bin")},
            capture_output=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture(scope="module")
def notice_run(launch_krita, dead_url):
    # With a system PyQt6 present, loading it into Krita 5 would mix two Qts; an invalid
    # choice then takes the same path (qt.py raises QtBindingError) without loading anything.
    value = "7" if _krita_python_has_pyqt6() else "6"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFUSION_LAYERS_QT", value)  # the harness passes the environment on
        run = launch_krita("startup_notice", ["smoke"], plugin_settings(dead_url), timeout_s=120)
    return run, value


def test_docker_shows_one_sentence_and_the_log_has_no_traceback(notice_run):
    run, value = notice_run
    assert not run.timed_out and run.returncode == 0, run.describe()
    data = run.scenario("smoke")
    assert data["docker"] is not None, f"no Diffusion Layers docker among {data['dockers']}"
    assert data["docker"]["title"] == "Diffusion Layers"
    if value == "6":
        sentence = (
            "Diffusion Layers could not load PyQt6 (No module named 'PyQt6'); install the PyQt6"
            " that matches this Krita, or set DIFFUSION_LAYERS_QT to the other binding."
        )
    else:
        sentence = (
            "The environment variable DIFFUSION_LAYERS_QT is '7'; set it to 5 (PyQt5) or 6"
            " (PyQt6), or remove it."
        )
    assert sentence in data["docker_texts"], data["docker_texts"]
    assert not any(data["actions"].values()), data["actions"]  # nothing half-registered
    assert data["controller_found"] is False
    log = run.log_path.read_text(errors="replace")
    assert log.count(sentence) == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
