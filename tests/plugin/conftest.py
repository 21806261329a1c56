"""Plugin tests: the plugin package and the fake ``krita`` module on sys.path, offscreen Qt."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for path in (HERE / "fake_krita", ROOT / "plugin"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import krita  # noqa: E402  (the fake)
from qt_binding import BINDING, QtWidgets  # noqa: E402  (PyQt5 or PyQt6: DIFFUSION_LAYERS_QT)

QApplication = QtWidgets.QApplication


def pytest_report_header() -> str:
    return f"plugin Qt binding: {BINDING} (set DIFFUSION_LAYERS_QT=5 or 6 to choose)"


@pytest.fixture(scope="session")
def qapp() -> QApplication:
    app = QApplication.instance() or QApplication(["plugin-tests"])
    return app  # type: ignore[return-value]


@pytest.fixture
def fake_krita(qapp: QApplication) -> Iterator[krita.Krita]:
    app = krita.Krita.reset()
    yield app
    krita.Krita.reset()
    assert not app.safe_asserts, f"calls real Krita refuses with a SAFE ASSERT: {app.safe_asserts}"
