"""The document's history in the docker, newest first: preview, apply again, copy seed or
prompt, reuse all parameters; the size limit and the note when old results were dropped."""

from __future__ import annotations

import base64
from typing import List, Optional

from ..controller import Controller
from ..history import Entry, History
from ..pixels import PixelError, decode_image
from ..qt import QIcon, QImage, QPixmap, QSize, Qt
from ..settings import MAX_HISTORY_MB
from ..workflow import Workflow
from .qt_widgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

PREVIEW_SIDE = 240


def thumbnail_image(entry: Entry) -> Optional[QImage]:
    """The entry's stored thumbnail (small, cheap on the UI thread), or None without one."""
    try:
        return decode_image(base64.b64decode(entry.thumbnail))
    except (PixelError, ValueError):
        return None


class HistoryPanel(QWidget):
    def __init__(self, controller: Controller, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.workflow = Workflow.of(controller)
        self._ids: List[str] = []
        self._history = History()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #b80;")
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(64, 64))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMaximumHeight(170)
        self.list.currentRowChanged.connect(self._selected)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        self.apply_again = QPushButton("Apply again")
        self.apply_again.setToolTip("The exact picture as a new layer where it was made")
        self.apply_again.clicked.connect(lambda _c=False: self._run(self.workflow.apply_again))
        self.copy_seed = QPushButton("Copy seed")
        self.copy_seed.clicked.connect(lambda _c=False: self._copy("seed"))
        self.copy_prompt = QPushButton("Copy prompt")
        self.copy_prompt.clicked.connect(lambda _c=False: self._copy("prompt"))
        self.reuse = QPushButton("Reuse all parameters")
        self.reuse.clicked.connect(lambda _c=False: self._run(self.workflow.reuse))
        for button in (self.apply_again, self.copy_seed, self.copy_prompt):
            row.addWidget(button)
        limit_row = QHBoxLayout()
        self.limit = QSpinBox()
        self.limit.setRange(0, MAX_HISTORY_MB)
        self.limit.setSuffix(" MB")
        self.limit.setToolTip("How much of each document's results its .kra keeps (0 = none)")
        self.limit.valueChanged.connect(
            lambda v: self.controller.update_settings(history_limit_mb=int(v))
        )
        limit_row.addWidget(QLabel("Keep in document up to"))
        limit_row.addWidget(self.limit)
        for widget in (self.note, self.list, self.preview, self.details):
            layout.addWidget(widget)
        layout.addLayout(row)
        layout.addWidget(self.reuse)
        layout.addLayout(limit_row)
        self.workflow.changed.connect(self.refresh)
        self.refresh()

    def selected(self) -> Optional[Entry]:
        row = self.list.currentRow()
        return self._history.find(self._ids[row]) if 0 <= row < len(self._ids) else None

    def refresh(self) -> None:
        self.limit.blockSignals(True)
        self.limit.setValue(self.controller.settings.history_limit_mb)
        self.limit.blockSignals(False)
        self._history = self.workflow.history()
        self.note.setText(self._history.note)
        self.note.setVisible(bool(self._history.note))
        entries = self._history.newest_first()
        ids = [e.id for e in entries]
        if ids != self._ids:
            keep = self.selected()
            self._ids = ids
            self.list.blockSignals(True)
            self.list.clear()
            for entry in entries:
                self.list.addItem(self._item(entry))
            self.list.blockSignals(False)
            row = ids.index(keep.id) if keep is not None and keep.id in ids else (0 if ids else -1)
            self.list.setCurrentRow(row)
            self._selected(row)
        self._enable()

    def _item(self, entry: Entry) -> QListWidgetItem:
        item = QListWidgetItem(f"#{entry.seed}")
        image = thumbnail_image(entry)
        if image is not None:  # without a thumbnail the seed alone names it
            item.setIcon(QIcon(QPixmap.fromImage(image)))
        item.setToolTip(entry.prompt or "(empty prompt)")
        return item

    def _enable(self) -> None:
        on = self.selected() is not None
        for button in (self.apply_again, self.copy_seed, self.copy_prompt, self.reuse):
            button.setEnabled(on)

    def _selected(self, _row: int) -> None:
        entry = self.selected()
        self._enable()
        if entry is None:
            self.preview.clear()
            self.details.setText("No results in this document's history yet.")
            return
        style = f" · style {entry.style}" if entry.style else ""
        params = entry.params
        self.details.setText(
            f"{entry.width}×{entry.height} at {entry.x},{entry.y} · seed {entry.seed} · "
            f"{params.get('mode', '?')}, {params.get('steps', '?')} steps{style}\n"
            f"{entry.prompt or '(empty prompt)'}"
        )
        # The stored thumbnail, never the full picture: decoding a 1024 x 1024 PNG here would
        # stall Krita's UI thread (the full picture is decoded only on Apply again).
        image = thumbnail_image(entry)
        if image is None:
            self.preview.clear()
            return
        self.preview.setPixmap(
            QPixmap.fromImage(
                image.scaled(
                    min(PREVIEW_SIDE, entry.width),
                    min(PREVIEW_SIDE, entry.height),
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        )

    def _run(self, action: "object") -> None:
        entry = self.selected()
        if entry is not None and callable(action):
            action(entry.id)

    def _copy(self, what: str) -> None:
        entry = self.selected()
        clipboard = QApplication.clipboard()
        if entry is not None and clipboard is not None:
            clipboard.setText(str(entry.seed) if what == "seed" else entry.prompt)
