"""The style row (first in the docker), the "Advanced" fold holding what a style sets, and the
mark under the prompt naming ``<lora:…>`` tags the server does not have."""

from __future__ import annotations

from typing import Optional

from .. import styles
from ..controller import Controller
from ..qt import Qt
from ..workflow import Workflow
from .qt_widgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

NO_STYLE = "(no style)"


class Advanced(QWidget):
    """A fold: a toggle button and, under it, ``form`` (shown while unfolded)."""

    def __init__(self, title: str = "Advanced", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.toggled.connect(self.set_open)
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.set_open(False)

    def set_open(self, on: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(on)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)

    @property
    def is_open(self) -> bool:
        return self.toggle.isChecked()


class StyleRow(QWidget):
    """Style combo, Save as style…, Delete style, and what the picked style sets."""

    def __init__(self, controller: Controller, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.workflow = Workflow.of(controller)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setToolTip("A style sets the model, LoRAs, prompt template and settings")
        self.combo.activated.connect(lambda _i: self.workflow.pick_style(self.combo.currentData()))
        self.save = QPushButton("Save as style…")
        self.save.clicked.connect(self._ask_save)
        self.delete = QPushButton("Delete style")
        self.delete.clicked.connect(self._ask_delete)
        row.addWidget(QLabel("Style"))
        row.addWidget(self.combo, 1)
        layout.addLayout(row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save)
        buttons.addWidget(self.delete)
        layout.addLayout(buttons)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout.addWidget(self.summary)
        layout.addWidget(self.message)
        self.workflow.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        s, models = self.controller.settings, self.controller.connection.models
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(NO_STYLE, "")
        for style in self.workflow.styles:
            label = f"{style.name} (built-in)" if style.builtin else style.name
            self.combo.addItem(label, style.name)
            self.combo.setItemData(
                self.combo.count() - 1, styles.describe(style, models), Qt.ItemDataRole.ToolTipRole
            )
        if s.style and self.combo.findData(s.style) < 0:
            self.combo.addItem(f"{s.style} (not on server)", s.style)
        self.combo.setCurrentIndex(max(0, self.combo.findData(s.style)))
        self.combo.blockSignals(False)
        current = self.workflow.current_style()
        self.delete.setEnabled(current is not None and not current.builtin)
        self.delete.setToolTip(
            "Built-in styles are read-only" if current is not None and current.builtin else ""
        )
        text = "" if current is None else styles.describe(current, models)
        changed = styles.overridden(s) if current is not None else []
        if changed:
            text += f" — changed under Advanced: {', '.join(changed)}"
        self.summary.setText(text)
        self.summary.setVisible(bool(text))
        self.message.setText(self.workflow.message)
        self.message.setVisible(bool(self.workflow.message))

    def _ask_save(self) -> None:
        name, ok = QInputDialog.getText(
            self,
            "Save as style",
            "Style name:",
            QLineEdit.EchoMode.Normal,
            self.controller.settings.style,
        )
        if ok and name.strip():
            self.workflow.save_style(name)

    def _ask_delete(self) -> None:
        name = self.controller.settings.style
        answer = QMessageBox.question(
            self, "Delete style", f"Delete the style '{name}' on the server?"
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.workflow.delete_style(name)


class LoraMarks(QLabel):
    """Under the prompt: the ``<lora:…>`` names the server does not have (Generate refuses)."""

    def __init__(self, controller: Controller, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWordWrap(True)
        self.setStyleSheet("color: #d33;")
        self.setVisible(False)

    def check(self, prompt: str) -> None:
        models = self.controller.connection.models
        unknown = (
            [] if models is None else styles.unknown_loras(prompt, [lo.name for lo in models.loras])
        )
        text = ", ".join(f"<lora:{n}>" for n in unknown)
        self.setText(f"Not on the server: {text}" if unknown else "")
        self.setVisible(bool(unknown))
