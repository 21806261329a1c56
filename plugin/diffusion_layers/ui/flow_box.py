"""The end of a docker section that runs a long flow (Upscale, Layers): a run button beside
Cancel, a progress bar and a message line (red when the flow failed)."""

from __future__ import annotations

from typing import Any, Optional

from .qt_widgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)


class FlowBox(QGroupBox):
    """A section around ``flow`` (``start()``, ``cancel()``, ``busy``, ``state``, ``message``
    and a ``progress(step, total)`` signal). Subclasses build their own rows, then call
    ``add_flow_rows(form)``; their ``refresh()`` calls ``show_flow(can_run)``."""

    def __init__(self, title: str, flow: Any, run_text: str, parent: Optional[QWidget]) -> None:
        super().__init__(title, parent)
        self.flow = flow
        self.run = QPushButton(run_text)
        self.run.clicked.connect(self._start)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        flow.progress.connect(self._progress)

    def add_flow_rows(self, form: QFormLayout) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.run, 2)
        buttons.addWidget(self.cancel, 1)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.message)

    def show_flow(self, can_run: bool = True) -> None:
        """Buttons, progress and message as the flow stands now."""
        flow = self.flow
        self.run.setEnabled(can_run and not flow.busy)
        self.cancel.setEnabled(flow.busy)
        if not flow.busy:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        self.message.setText(flow.message)
        self.message.setStyleSheet("color: #d33;" if flow.state == "failed" else "")
        self.message.setVisible(bool(flow.message))

    def _start(self, *_checked: object) -> None:
        self.flow.start()

    def _cancel(self, *_checked: object) -> None:
        self.flow.cancel()

    def _progress(self, step: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)
