"""Helpers shared by the plugin tests (imported as ``plugin_helpers``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qt_binding import QtWidgets  # the binding the plugin uses (PyQt5 or PyQt6)

QApplication = QtWidgets.QApplication


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Run the Qt event loop until predicate() holds (the plugin is asynchronous)."""
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        assert app is not None
        app.processEvents()
        time.sleep(0.002)


def pump(seconds: float) -> None:
    """Process events for a while (to show that something does NOT happen)."""
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert app is not None
        app.processEvents()
        time.sleep(0.002)
