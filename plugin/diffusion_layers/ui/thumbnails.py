"""The strip of result thumbnails; clicking one previews it on the canvas."""

from __future__ import annotations

from typing import List

from ..pixels import bgra_to_qimage
from ..qt import QIcon, QPixmap, QSize, Qt, pyqtSignal
from ..results import Result
from .qt_widgets import QListView, QListWidget, QListWidgetItem, QWidget

THUMB = 72


class ThumbnailStrip(QListWidget):
    picked = pyqtSignal(int)

    def __init__(self, parent: "QWidget | None" = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setFixedHeight(THUMB + 34)
        self.setMovement(QListView.Movement.Static)
        self._shown: List[int] = []
        self.currentRowChanged.connect(self._row_changed)

    def set_results(self, results: List[Result], selected: int) -> None:
        ids = [id(r) for r in results]
        if ids != self._shown:
            self.blockSignals(True)
            self.clear()
            for item in results:
                image = bgra_to_qimage(item.pixels, item.info.width, item.info.height)
                icon = QIcon(
                    QPixmap.fromImage(
                        image.scaled(
                            THUMB,
                            THUMB,
                            Qt.AspectRatioMode.KeepAspectRatio,
                            Qt.TransformationMode.SmoothTransformation,
                        )
                    )
                )
                entry = QListWidgetItem(icon, f"#{item.seed}")
                entry.setToolTip(f"seed {item.seed}, {item.info.width}x{item.info.height}")
                self.addItem(entry)
            self.blockSignals(False)
            self._shown = ids
        self.blockSignals(True)
        self.setCurrentRow(selected)
        self.blockSignals(False)

    def _row_changed(self, row: int) -> None:
        if row >= 0:
            self.picked.emit(row)
