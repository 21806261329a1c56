"""Styles and the document history, next to the controller (which stays the job state machine).

``Workflow.of(controller)`` is the one instance, a child QObject of the controller. It watches
the controller: the server's styles are loaded whenever its model list arrives, and every job's
results go into their document's history (``history``) as they arrive: encoded off Krita's
UI thread and written back on it (``history_recorder``).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from . import history as history_mod
from . import layer_params, styles
from . import results as results_mod
from .canvas import CanvasDocument, NewLayer
from .controller import GENERATING, Controller
from .errors import NoDocument, PluginError
from .history_recorder import HistoryRecorder, clipped
from .placement import layer_name
from .protocol import Style
from .qt import QObject, pyqtSignal
from .settings import LoraChoice

log = logging.getLogger(__name__)


class Workflow(QObject):
    changed = pyqtSignal()  # styles, a history or the message changed

    def __init__(self, controller: Controller) -> None:
        super().__init__(controller)
        self.controller = controller
        self.styles: List[Style] = []
        self.message = ""  # the last sentence about styles or the history ("" = none)
        self._recorded: Dict[str, Any] = {}  # doc key -> the results list already recorded
        self._models: Any = None  # the model list the styles were loaded for
        self.recorder = HistoryRecorder(self)  # encodes off the UI thread, writes back on it
        self.recorder.recorded.connect(lambda _key: self.changed.emit())
        self.recorder.failed.connect(self._say)
        controller.changed.connect(self._observe)

    @classmethod
    def of(cls, controller: Controller) -> "Workflow":
        for child in controller.children():
            if isinstance(child, Workflow):
                return child
        return cls(controller)

    def _observe(self) -> None:
        models = self.controller.connection.models
        if models is not None and models is not self._models:
            self._models = models
            self.load_styles()
        for key, session in list(self.controller.sessions.items()):
            if session.state == GENERATING or not session.results:
                continue
            if self._recorded.get(key) is not session.results:
                self._recorded[key] = session.results
                self._record(key, session)

    # -- history --------------------------------------------------------------------------

    def _record(self, key: str, session: Any) -> None:
        doc, limit = self.controller.canvas.document(key), self.controller.settings.history_limit_mb
        if doc is None or session.params is None or session.region is None or limit <= 0:
            return
        results, params, region, mask = (
            list(session.results),
            session.params,
            session.region,
            session.mask,
        )

        def make() -> List[history_mod.NewEntry]:  # on the recorder's worker thread
            return [
                history_mod.NewEntry(
                    clipped(item.pixels, item.rect, region, mask),
                    item.rect,
                    item.seed,
                    params,
                )
                for item in results
            ]

        self.recorder.submit(key, doc, make, limit)

    def history(self) -> history_mod.History:
        """The active document's history (empty without a document)."""
        doc = self.controller.canvas.active_document()
        return history_mod.History() if doc is None else history_mod.load(doc)

    def _entry(self, entry_id: str) -> "tuple[CanvasDocument, history_mod.Entry]":
        doc = self.controller.canvas.active_document()
        if doc is None:
            raise NoDocument("Open or create a document first.")
        entry = history_mod.load(doc).find(entry_id)
        if entry is None:
            raise PluginError("That history entry is no longer in this document.")
        return doc, entry

    def picture(self, entry_id: str) -> Optional[bytes]:
        """An entry's full picture (BGRA8), or None with ``message`` set."""
        try:
            doc, entry = self._entry(entry_id)
            return history_mod.pixels_of(doc, entry)
        except PluginError as exc:
            self._say(str(exc))
            return None

    def apply_again(self, entry_id: str) -> Optional[str]:
        """The entry's picture as a new layer at its original position (byte-exact); returns
        the layer's uniqueId."""
        try:
            doc, entry = self._entry(entry_id)
            pixels = history_mod.pixels_of(doc, entry)
            layer_id = doc.add_layer(
                NewLayer(layer_name(entry.prompt, entry.seed), pixels, entry.rect)
            )
        except PluginError as exc:
            self._say(str(exc))
            return None
        params = entry.job_params()
        if params is not None:  # "Reuse settings of layer" works on it too
            layer_params.remember(doc, layer_id, params, entry.seed, 0)
        self._say("")
        return layer_id

    def reuse(self, entry_id: str) -> bool:
        """Every parameter of the entry's job (its seed fixed) into the settings."""
        try:
            _doc, entry = self._entry(entry_id)
        except PluginError as exc:
            self._say(str(exc))
            return False
        params = entry.job_params()
        if params is None:
            self._say("This history entry's parameters cannot be read.")
            return False
        values = results_mod.settings_from(params, entry.seed)
        values.update(
            batch=params.batch, loras=[LoraChoice(lo.name, lo.weight) for lo in params.loras]
        )
        # Sent explicitly from now on (nothing left to the style): the job as it was made.
        values.update(style=params.style or "", style_values={})
        self.controller.update_settings(**values)
        self._say("")
        return True

    def clear_note(self) -> None:
        doc = self.controller.canvas.active_document()
        if doc is not None:
            history_mod.clear_note(doc)
            self.changed.emit()

    # -- styles ---------------------------------------------------------------------------

    def load_styles(self) -> None:
        self.controller.client.styles(self._styles_arrived, self._styles_failed)

    def _styles_arrived(self, items: List[Style]) -> None:
        self.styles = items
        self.changed.emit()

    def _styles_failed(self, error: PluginError) -> None:
        log.info("styles not loaded: %s", error)
        self.styles = []
        if getattr(error, "status", None) != 404:  # an older server has no styles
            self._say(f"Styles could not be loaded: {error}")
        else:
            self.changed.emit()

    def style(self, name: str) -> Optional[Style]:
        return next((s for s in self.styles if s.name == name), None)

    def current_style(self) -> Optional[Style]:
        return self.style(self.controller.settings.style)

    def pick_style(self, name: str) -> None:
        """Use style ``name`` ("" = none): its values go into the settings ("Advanced")."""
        style = self.style(name) if name else None
        self.controller.update_settings(**styles.pick(style, self.controller.connection.models))
        self._say("")

    def save_style(self, name: str) -> bool:
        """The current settings as style ``name`` on the server (asynchronous); False with a
        sentence when the name cannot be used or is a built-in's."""
        try:
            style = styles.from_settings(name, self.controller.settings, self.current_style())
            existing = self.style(style.name)
            if existing is not None and existing.builtin:
                raise PluginError(
                    f"'{style.name}' is a built-in style and cannot be changed: save under "
                    "another name."
                )
        except PluginError as exc:
            self._say(str(exc))
            return False
        self.controller.client.save_style(style, self._saved, self._failed)
        return True

    def _saved(self, style: Style) -> None:
        self.styles = [s for s in self.styles if s.name != style.name] + [style]
        self.pick_style(style.name)
        self._say(f"Style '{style.name}' saved on the server.")
        self.load_styles()

    def delete_style(self, name: str) -> bool:
        style = self.style(name)
        if style is None or style.builtin:
            self._say(
                f"'{name}' is a built-in style: it cannot be deleted."
                if style is not None
                else f"There is no style '{name}' on the server."
            )
            return False
        self.controller.client.delete_style(name, lambda: self._deleted(name), self._failed)
        return True

    def _deleted(self, name: str) -> None:
        self.styles = [s for s in self.styles if s.name != name]
        if self.controller.settings.style == name:
            self.pick_style("")
        self._say(f"Style '{name}' deleted.")
        self.load_styles()

    def _failed(self, error: PluginError) -> None:
        self._say(str(error))

    def _say(self, sentence: str) -> None:
        self.message = sentence
        self.changed.emit()
