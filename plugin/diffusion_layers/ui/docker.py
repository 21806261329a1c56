"""The "Diffusion Layers" docker panel (a plain QWidget; extension.py puts it in a DockWidget)."""

from __future__ import annotations

from typing import Any, Callable, List

from ..controller import GENERATING, PREVIEW, Controller
from ..protocol import MAX_BATCH, MAX_SEED
from ..qt import QHideEvent, QImage, QPixmap, QShowEvent, Qt, QTimer
from .capability_view import show_capabilities, show_mode_support
from .controls import ControlList
from .edit import DecomposeBox, edit_toggle
from .history import HistoryPanel
from .loras import LoraList
from .qt_widgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from .styles import Advanced, LoraMarks, StyleRow
from .thumbnails import ThumbnailStrip
from .upscale import UpscaleBox, hires_combo, mode_sentence

MODE_REFRESH_MS = 1500
PROMPT_SAVE_MS = 400


def _slot(method: Callable[[], object]) -> Callable[..., None]:
    """A button slot that ignores the 'checked' argument and the method's return value."""

    def run(*_args: object) -> None:
        method()

    return run


def _slot_int(method: Callable[[int], object]) -> Callable[[int], None]:
    def run(value: int) -> None:
        method(value)

    return run


class DockerPanel(QScrollArea):
    def __init__(self, controller: Controller, parent: "QWidget | None" = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWidgetResizable(True)
        body = QWidget()
        self.setWidget(body)
        self.layout_ = QVBoxLayout(body)
        self.advanced = Advanced()  # what a style sets (folded while a style is picked)
        self._build_connection()
        self.style_row = StyleRow(controller)  # the style comes first
        self.layout_.addWidget(self.style_row)
        self._build_prompt()
        self.layout_.addWidget(self.advanced)
        self._build_parameters()
        self._build_extras()
        self._build_run()
        self.upscale = UpscaleBox(controller)  # Upscale / Refine detail (ui/upscale.py)
        self.layout_.addWidget(self.upscale)
        self.decompose = DecomposeBox(controller)  # Decompose into Layers (ui/edit.py)
        self.layout_.addWidget(self.decompose)
        self.history = HistoryPanel(controller)
        history_box = QGroupBox("History")
        QVBoxLayout(history_box).addWidget(self.history)
        self.layout_.addWidget(history_box)
        self._style_shown: "str | None" = None
        self.layout_.addStretch(1)
        controller.changed.connect(self.refresh)
        controller.progress.connect(self._progress)
        controller.preview_image.connect(self._preview)
        self._prompt_timer = QTimer(self)
        self._prompt_timer.setSingleShot(True)
        self._prompt_timer.timeout.connect(self._save_prompts)
        self._mode_timer = QTimer(self)
        self._mode_timer.timeout.connect(self._tick)
        self._mode_timer.start(MODE_REFRESH_MS)
        self.refresh()

    # -- building ------------------------------------------------------------------------

    def _build_connection(self) -> None:
        box = QGroupBox("Server")
        form = QFormLayout(box)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.url = QLineEdit(self.controller.settings.server_url)
        self.token = QLineEdit(self.controller.settings.token)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("optional")
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self._connect)
        self.model = QComboBox()
        self.model.activated.connect(
            lambda _i: self.controller.update_settings(model=self.model.currentData() or "")
        )
        form.addRow(self.status)
        form.addRow("URL", self.url)
        form.addRow("Token", self.token)
        form.addRow(self.connect_button)
        self.advanced.form.addRow("Model", self.model)
        self.layout_.addWidget(box)

    def _build_prompt(self) -> None:
        self.mode = QLabel()
        self.mode.setWordWrap(True)
        self.prompt = QPlainTextEdit(self.controller.settings.prompt)
        self.prompt.setPlaceholderText("Prompt (may be empty)")
        self.prompt.setMaximumHeight(80)
        self.negative = QPlainTextEdit(self.controller.settings.negative_prompt)
        self.negative.setPlaceholderText("Negative prompt")
        self.negative.setMaximumHeight(50)
        for edit in (self.prompt, self.negative):
            edit.textChanged.connect(self._typed)
        self.lora_marks = LoraMarks(self.controller)
        self.prompt.textChanged.connect(lambda: self.lora_marks.check(self.prompt.toPlainText()))
        for widget in (self.mode, self.prompt, self.lora_marks):
            self.layout_.addWidget(widget)
        self.advanced.form.addRow(self.negative)

    def _build_parameters(self) -> None:
        form = QFormLayout()
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength_label = QLabel()
        self.strength.valueChanged.connect(lambda v: self._set(strength=v / 100.0))
        row = QHBoxLayout()
        row.addWidget(self.strength, 1)
        row.addWidget(self.strength_label)
        form.addRow("Strength", row)
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.steps.valueChanged.connect(lambda v: self._set(steps=v))
        self.cfg = QDoubleSpinBox()
        self.cfg.setRange(0.0, 30.0)
        self.cfg.setSingleStep(0.5)
        self.cfg.valueChanged.connect(lambda v: self._set(cfg_scale=v))
        self.sampler = QComboBox()
        self.sampler.activated.connect(lambda _i: self._set(sampler=self.sampler.currentText()))
        self.random_seed = QCheckBox("random")
        self.seed = QSpinBox()
        self.seed.setRange(0, min(MAX_SEED, 2**31 - 1))
        self.random_seed.toggled.connect(lambda on: self._set(seed=-1 if on else self.seed.value()))
        self.seed.valueChanged.connect(
            lambda v: None if self.random_seed.isChecked() else self._set(seed=v)
        )
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        self.used_seed = QLabel()
        self.reuse_seed = QPushButton("Reuse seed")
        self.reuse_seed.clicked.connect(_slot(self.controller.reuse_seed))
        used_row = QHBoxLayout()
        used_row.addWidget(self.used_seed, 1)
        used_row.addWidget(self.reuse_seed)
        self.batch = QSpinBox()
        self.batch.setRange(1, MAX_BATCH)
        self.batch.valueChanged.connect(lambda v: self._set(batch=v))
        self.advanced.form.addRow("Steps", self.steps)
        self.advanced.form.addRow("CFG", self.cfg)
        self.advanced.form.addRow("Sampler", self.sampler)
        form.addRow("Seed", seed_row)
        form.addRow("Used seed", used_row)
        form.addRow("Batch", self.batch)
        form.addRow("High-resolution pass", hires_combo(self.controller))
        self.layout_.addLayout(form)

    def _build_extras(self) -> None:
        controls_box = QGroupBox("Control layers")
        self.controls = ControlList()
        self.controls.edited.connect(self.controller.controls.set)
        self.controls.add_active.connect(_slot(self.controller.add_active_layer_as_control))
        self.controls.preprocess.connect(self._preprocess)
        QVBoxLayout(controls_box).addWidget(self.controls)
        lora_box = QGroupBox("LoRAs")
        self.loras = LoraList()
        self.loras.edited.connect(lambda items: self._set(loras=items))
        QVBoxLayout(lora_box).addWidget(self.loras)
        self.layout_.addWidget(controls_box)
        self.advanced.form.addRow(lora_box)

    def _build_run(self) -> None:
        row = QHBoxLayout()
        self.generate = QPushButton("Generate")
        self.generate.clicked.connect(self._generate)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(_slot(self.controller.cancel))
        self.live_toggle = QPushButton("Live")
        self.live_toggle.setCheckable(True)
        self.live_toggle.setToolTip("Live painting: re-render the canvas after every stroke")
        self.live_toggle.clicked.connect(_slot(self.controller.toggle_live))
        self.edit = edit_toggle(self.controller)  # edit by instruction (ui/edit.py)
        row.addWidget(self.edit)
        row.addWidget(self.generate, 2)
        row.addWidget(self.cancel, 1)
        self.live_record = QPushButton("Rec")
        self.live_record.setCheckable(True)
        self.live_record.setToolTip("Record live frames to the server's output folder (live/)")
        self.live_record.toggled.connect(self._record_live)
        row.addWidget(self.live_toggle, 1)
        row.addWidget(self.live_record)
        self.layout_.addLayout(row)
        self.progress = QProgressBar()
        self.live = QLabel()
        self.live.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet("color: #d33;")
        self.thumbnails = ThumbnailStrip()
        self.thumbnails.picked.connect(_slot_int(self.controller.show_result))
        actions = QHBoxLayout()
        self.apply = QPushButton("Apply")
        self.apply.clicked.connect(_slot(self.controller.apply))
        self.apply_all = QPushButton("Apply all")
        self.apply_all.clicked.connect(_slot(self.controller.apply_all))
        self.discard = QPushButton("Discard")
        self.discard.clicked.connect(_slot(self.controller.discard))
        self.reuse = QPushButton("Reuse settings of layer")
        self.reuse.clicked.connect(_slot(self.controller.reuse_settings))
        for button in (self.apply, self.apply_all, self.discard):
            actions.addWidget(button)
        for widget in (self.progress, self.live, self.error, self.thumbnails):
            self.layout_.addWidget(widget)
        self.layout_.addLayout(actions)
        self.layout_.addWidget(self.reuse)

    # -- reacting ------------------------------------------------------------------------

    def showEvent(self, a0: "QShowEvent | None") -> None:
        super().showEvent(a0)
        self.controller.connection.want("docker", True)  # reconnect while it is visible

    def hideEvent(self, a0: "QHideEvent | None") -> None:
        super().hideEvent(a0)
        self.controller.connection.want("docker", False)

    def _set(self, **values: Any) -> None:
        self.controller.update_settings(**values)

    def _preprocess(self, kind: str, layer: str) -> None:
        self.controller.preprocess_to_layer(kind, layer)

    def _connect(self) -> None:
        self.controller.update_settings(server_url=self.url.text().strip(), token=self.token.text())
        self.controller.connect_server()

    def _record_live(self, on: bool) -> None:
        self.controller.live.record = on

    def _typed(self) -> None:
        """Typed text is in the settings at once: every action that sends a job (Generate,
        Upscale, their menu shortcuts, live frames) reads it. Saving it and telling the other
        views waits for PROMPT_SAVE_MS without typing."""
        s = self.controller.settings
        s.prompt, s.negative_prompt = self.prompt.toPlainText(), self.negative.toPlainText()
        self._prompt_timer.start(PROMPT_SAVE_MS)

    def _save_prompts(self) -> None:
        self.controller.update_settings(
            prompt=self.prompt.toPlainText(), negative_prompt=self.negative.toPlainText()
        )

    def _generate(self) -> None:
        self._prompt_timer.stop()
        self._save_prompts()
        self.live.clear()
        self.controller.generate()

    def _progress(self, step: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)

    def _preview(self, image: QImage) -> None:
        self.live.setPixmap(
            QPixmap.fromImage(
                image.scaled(
                    160,
                    160,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        )

    def refresh_mode(self) -> None:
        busy = self.controller.state == GENERATING or self.controller.upscale.busy
        if self.isVisible() and not busy:
            self.mode.setText(mode_sentence(self.controller))  # cheap on large canvases
            show_mode_support(self)  # greys Generate out for a mode the model lacks

    def _tick(self) -> None:
        if self.isVisible():
            self._refresh_state()

    def refresh(self) -> None:
        c, s = self.controller, self.controller.settings
        widgets: List[QWidget] = [
            self.strength,
            self.steps,
            self.cfg,
            self.seed,
            self.random_seed,
            self.batch,
            self.sampler,
            self.model,
        ]
        for widget in widgets:
            widget.blockSignals(True)
        self.status.setText(c.connection.message or "Not connected yet")
        self.strength.setValue(round(s.strength * 100))
        self.strength_label.setText(f"{round(s.strength * 100)}%")
        self.steps.setValue(s.steps)
        self.cfg.setValue(s.cfg_scale)
        self.random_seed.setChecked(s.seed < 0)
        if s.seed >= 0:
            self.seed.setValue(min(s.seed, self.seed.maximum()))
        self.seed.setEnabled(s.seed >= 0)
        self.batch.setValue(s.batch)
        self._fill_models()
        for widget in widgets:
            widget.blockSignals(False)
        if self.prompt.toPlainText() != s.prompt and not self._prompt_timer.isActive():
            self.prompt.setPlainText(s.prompt)
            self.negative.setPlainText(s.negative_prompt)
        self.loras.set_loras(s.loras)
        self.lora_marks.check(self.prompt.toPlainText())
        if s.style != self._style_shown:  # Advanced folds while a style decides it
            self._style_shown = s.style
            self.advanced.set_open(not s.style)
        self.style_row.refresh()
        self.history.refresh()
        show_capabilities(self)  # hide negative prompt / CFG, grey out what the model lacks
        self._refresh_state()

    def _refresh_state(self) -> None:
        """What follows the active document and may change behind the plugin's back (undo,
        a deleted layer, another document): controls, buttons, error, results."""
        c = self.controller
        labels = c.controls.labels()
        self.controls.set_controls(c.controls.current(), labels)
        state = c.state
        self.generate.setEnabled(state != GENERATING)
        self.cancel.setEnabled(state == GENERATING)
        self.apply.setEnabled(state == PREVIEW or c.live.frame_ready)
        doc = c.canvas.active_document()
        self.live_toggle.setChecked(doc is not None and c.live.doc_key == doc.key)
        self.apply_all.setEnabled(bool(c.results) and state != GENERATING)
        self.discard.setEnabled(bool(c.results) and state != GENERATING)
        seed = c.used_seed
        self.used_seed.setText("—" if seed is None else str(seed))
        self.reuse_seed.setEnabled(seed is not None)
        self.error.setText(c.last_error)
        self.error.setVisible(bool(c.last_error))
        if state != GENERATING:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        self.thumbnails.set_results(c.results, c.selected_index)
        self.refresh_mode()

    def _fill_models(self) -> None:
        s, models = self.controller.settings, self.controller.connection.models
        self.model.clear()
        self.model.addItem("(server default)", "")
        self.sampler.clear()
        if models is not None:
            for checkpoint in models.checkpoints:
                self.model.addItem(checkpoint.name, checkpoint.name)
            self.sampler.addItems(models.samplers)
            self.loras.set_available([lo.name for lo in models.loras])
        if s.model and self.model.findData(s.model) < 0:
            self.model.addItem(f"{s.model} (not on server)", s.model)
        self.model.setCurrentIndex(max(0, self.model.findData(s.model)))
        if self.sampler.findText(s.sampler) < 0:
            self.sampler.addItem(s.sampler)
        self.sampler.setCurrentText(s.sampler)
