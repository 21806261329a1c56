"""The driver's Krita extension: waits for the main window, then hands over to the runner."""

from __future__ import annotations

import os

from krita import Extension, Krita
from PyQt5.QtCore import QTimer

from .runner import ScenarioRunner

#: Let Krita finish building its window (dockers, actions) before the first scenario.
START_DELAY_MS = 1500


class DriverExtension(Extension):
    def __init__(self, parent) -> None:
        super().__init__(parent)
        self._runner: ScenarioRunner | None = None

    def setup(self) -> None:
        names = os.environ.get("DL_E2E_SCENARIOS", "").strip()
        report = os.environ.get("DL_E2E_REPORT", "").strip()
        if not names or not report:
            return
        self._runner = ScenarioRunner(
            [n.strip() for n in names.split(",") if n.strip()],
            report_path=report,
            artifacts_dir=os.environ.get("DL_E2E_ARTIFACTS", os.path.dirname(report)),
            control_dir=os.environ.get("DL_E2E_CONTROL", ""),
        )
        Krita.instance().notifier().windowCreated.connect(self._on_window_created)

    def _on_window_created(self) -> None:
        if self._runner is not None and not self._runner.started:
            QTimer.singleShot(START_DELAY_MS, self._runner.start)

    def createActions(self, window) -> None:  # Krita override
        pass
