"""The generation state machine: idle → generating → preview (→ idle on apply) or error.

One Session per document holds its state (job, results, previews, controls, errors); ``state``/
``last_error``/``results``/``controls`` follow the active document. Callbacks drop a job whose
document was closed; the canvas changes only once all its results arrived. A refusal said before
sending goes as soon as the settings change (its cause may be gone); a server's error stays.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, cast

from . import doc_controls, previews, step_preview
from . import results as results_mod
from .canvas import Canvas, CanvasDocument
from .client import Client
from .connection import Connection
from .decompose_flow import DecomposeFlow
from .edit_request import plan_generate
from .errors import ConnectionFailed, NoDocument, PluginError
from .geometry import GeometryError
from .job_watch import submit_job
from .live import LiveCanvas, LiveLoop
from .placement import SINCE_GENERATED, check_canvas
from .planning import plan_job
from .preprocess import preprocess_to_layer
from .protocol import JobCreated, JobInfo, ProgressEvent
from .qt import QObject, pyqtSignal
from .session import ERROR, GENERATING, IDLE, PREVIEW, Session, clear_refusal
from .settings import PluginSettings, SettingsStore
from .upscale_flow import UpscaleFlow

log = logging.getLogger(__name__)


class Controller(QObject):
    changed = pyqtSignal()  # state, results, errors or connection changed
    progress = pyqtSignal(int, int)  # step, total steps
    preview_image = pyqtSignal(object)  # QImage of the live preview

    def __init__(
        self, canvas: Canvas, client: Client, store: SettingsStore, parent: Optional[QObject] = None
    ) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.client = client
        self.store = store
        self.settings = PluginSettings.load(store)
        self.client.configure(self.settings.server_url, self.settings.token)
        self.sessions: Dict[str, Session] = {}
        self.connection = Connection(client, self)
        self.connection.changed.connect(self.changed)
        self._error = ""  # errors with no document to attach them to
        #: Each document's control layers (``controls.current()`` for the active one).
        self.controls = doc_controls.DocumentControls(
            canvas, self._session_of, self.changed.emit, self._set_error
        )
        self.live = LiveLoop(cast(LiveCanvas, canvas), client, lambda: self.settings, self)
        self.live.controls, self.live.models = self.controls.of, lambda: self.connection.models
        self.live.changed.connect(self.changed)
        self.changed.connect(self._track_jobs)  # a pending job keeps reconnects going
        self.upscale = UpscaleFlow(self)  # Upscale / Refine detail (upscale_flow.py)
        self.decompose = DecomposeFlow(self)  # Decompose into Layers (decompose_flow.py)

    # -- status API (docker and tests) ----------------------------------------------------

    def session(self) -> Optional[Session]:
        doc = self.canvas.active_document()
        return self.sessions.get(doc.key) if doc is not None else None

    def _session_of(self, doc: CanvasDocument) -> Session:
        s = self.sessions.setdefault(doc.key, Session(doc.key))
        if not s.controls_loaded:
            s.controls, s.controls_loaded = doc_controls.load(doc), True
        return s

    @property
    def state(self) -> str:
        s = self.session()
        if s is None:
            return ERROR if self._error else IDLE
        return previews.state(s, self.canvas.active_document())

    @property
    def last_error(self) -> str:
        s = self.session()
        error = s.last_error if s is not None and s.last_error else self._error
        return error or self.live.last_error

    @property
    def results(self) -> List[results_mod.Result]:
        s = self.session()
        if s is None or (s.discarded and self.state != PREVIEW):
            return []
        return list(s.results)

    @property
    def selected_index(self) -> int:
        s = self.session()
        return -1 if s is None else s.selected

    @property
    def used_seed(self) -> Optional[int]:
        s = self.session()
        return s.results[s.selected].seed if s and 0 <= s.selected < len(s.results) else None

    def mode_preview(self) -> str:
        """The sentence the docker shows: which mode Generate will run."""
        try:
            doc = self._document()
            if self.live.running and self.live.doc_key == doc.key:
                return "Live mode is on: every change is rendered into the [Live] layer."
            return plan_job(doc, self.settings, read_controls=False).choice.label
        except (PluginError, GeometryError) as exc:
            return f"Cannot generate: {exc}"

    # -- settings and connection ----------------------------------------------------------

    def update_settings(self, **values: object) -> None:
        clear_refusal(self.session(), self.settings, values)  # before the values are set
        for key, value in values.items():
            if not hasattr(self.settings, key):
                raise AttributeError(f"unknown setting {key!r}")
            setattr(self.settings, key, value)
        self.settings.save(self.store)
        if "server_url" in values or "token" in values:
            self.client.configure(self.settings.server_url, self.settings.token)
        self.changed.emit()

    def connect_server(self) -> None:
        """Check health and load the model list (asynchronous; watch ``connection``)."""
        self.connection.connect_server()

    # -- generate -------------------------------------------------------------------------

    def _document(self) -> CanvasDocument:
        doc = self.canvas.active_document()
        if doc is None:
            raise NoDocument("Open or create a document first.")
        doc.check_supported()
        return doc

    def generate(self) -> bool:
        """Start a job for the active document; False (with last_error set) when it cannot."""
        try:
            doc = self._document()
        except PluginError as exc:
            self._error = str(exc)
            self.changed.emit()
            return False
        self._error = ""
        session = self._session_of(doc)
        if session.state == GENERATING:
            return False
        try:
            rows, models = session.controls, self.connection.models  # the mode, or an edit
            plan, params, parts = plan_generate(self.canvas, doc, self.settings, rows, models)
        except (PluginError, GeometryError) as exc:
            self._fail(session, exc, refusal=True)
            return False
        session.state, session.last_error, session.cancel_requested = GENERATING, "", False
        session.params, session.region, session.mask = params, plan.region, plan.mask
        session.canvas = doc.bounds()  # a result for another canvas is refused (check_canvas)
        session.job_id, session.step, session.total_steps = None, 0, params.steps
        log.info("job for %s: %s over %s", doc.key, params.mode, plan.region)
        submit_job(
            self.client,
            parts,
            lambda created: self._created(session, created),
            lambda error: self._job_failed(session, error),
        )
        self.changed.emit()
        return True

    def _alive(self, session: Session) -> Optional[CanvasDocument]:
        """The session's document, or None (and the session dropped) once it was closed."""
        doc = self.canvas.document(session.doc_key)
        if doc is None:
            log.info("document %s was closed; discarding job %s", session.doc_key, session.job_id)
            if session.watch is not None:
                session.watch.stop()
            if session.job_id is not None and session.state == GENERATING:
                self.client.cancel(session.job_id, lambda: None, lambda _e: None)
            self.sessions.pop(session.doc_key, None)
            self.changed.emit()
        return doc

    def _created(self, session: Session, created: JobCreated) -> None:
        session.job_id = created.id
        if session.cancel_requested:
            self.client.cancel(created.id, lambda: None, lambda _e: None)
            return
        if self._alive(session) is None:
            return
        session.watch = self.client.watch(
            created.id,
            lambda event: self._progress(session, event),
            lambda info: self._finished(session, info),
            lambda error: self._job_failed(session, error),
        )
        session.watch.on_retry = self._server_trouble

    def _is_active(self, session: Session) -> bool:
        return self.session() is session

    def _server_trouble(self, error: PluginError) -> None:
        """A job request failed and will be retried; the docker shows the server as lost."""
        if isinstance(error, ConnectionFailed):
            self.connection.lost(error)

    def _track_jobs(self) -> None:
        pending = any(s.state == GENERATING for s in self.sessions.values())
        self.connection.want("job", pending)

    def _progress(self, session: Session, event: ProgressEvent) -> None:
        if session.state != GENERATING or self._alive(session) is None:
            return
        session.step, session.total_steps = event.step, event.total_steps
        if self.session() is session:
            self.progress.emit(event.step, event.total_steps)
        if event.preview_url:
            shown = self.preview_image.emit
            step_preview.fetch(self.client, session, event.preview_url, self._is_active, shown)

    def _finished(self, session: Session, info: JobInfo) -> None:
        session.watch = None
        if session.state != GENERATING or self._alive(session) is None:
            return
        if info.state == "cancelled":
            session.state = IDLE
            self.changed.emit()
        elif info.state == "failed":
            message = info.error.message if info.error else "the job failed without a message"
            code = info.error.code if info.error else "failed"
            self._fail(session, PluginError(f"Generation failed ({code}): {message}"))
        else:
            results_mod.fetch_all(
                self.client,
                info.results,
                lambda items: self._fetched(session, items),
                lambda error: self._job_failed(session, error),
            )

    def _fetched(self, session: Session, items: List[results_mod.Result]) -> None:
        doc = self._alive(session)
        if doc is None or session.state != GENERATING or session.region is None:
            return
        try:  # no result, one not covering what was asked, or for another canvas: refused
            check_canvas(session.canvas, doc.bounds())
            session.results = results_mod.place(items, session.region, session.mask)
        except PluginError as exc:
            return self._fail(session, exc)
        keep_live = self.live.doc_key == doc.key  # the job's own document, active or not
        previews.show_first(session, doc, keep_live, lambda e: self._placed(session, e), self)

    def _placed(self, session: Session, error: Optional[Exception]) -> None:
        if error is not None and self._alive(session) is not None:
            return self._fail(session, error)
        self.changed.emit()

    def _job_failed(self, session: Session, error: PluginError) -> None:
        session.watch = None
        self._server_trouble(error)
        if session.state == GENERATING and self._alive(session) is not None:
            self._fail(session, error)

    def _fail(self, session: Session, error: Exception, refusal: bool = False) -> None:
        log.warning("generation failed for %s: %s", session.doc_key, error)
        session.state, session.last_error = ERROR, str(error)
        session.refused = str(error) if refusal else ""
        self.changed.emit()

    def cancel(self) -> bool:
        upscaling = self.upscale.cancel() | self.decompose.cancel()  # one Cancel stops all
        s = self.session()
        if s is None or s.state != GENERATING:
            return upscaling
        if s.watch is not None:
            s.watch.stop()
            s.watch = None
        if s.placing is not None:  # the result was landing in strips: nothing is shown
            s.placing.stop()
            s.placing, s.results = None, []
        if s.job_id is None:
            s.cancel_requested = True
        else:
            self.client.cancel(s.job_id, lambda: None, lambda e: log.info("cancel: %s", e))
        s.state = PREVIEW if s.results else IDLE
        self.changed.emit()
        return True

    # -- results --------------------------------------------------------------------------

    def show_result(self, index: int) -> bool:
        """Preview result ``index`` of the active document in its ``[Preview]`` layer."""
        s, doc = self.session(), self.canvas.active_document()
        if s is None or doc is None or s.state == GENERATING:
            return False
        return self._show(s, doc, index)

    def _show(self, s: Session, doc: CanvasDocument, index: int) -> bool:
        """Show a result in the preview layer of the session's own document."""
        try:
            check_canvas(s.canvas, doc.bounds(), SINCE_GENERATED)
            shown = previews.show(s, doc, index, keep_live=self.live.doc_key == doc.key)
        except PluginError as exc:
            self._fail(s, exc)
            return False
        self.changed.emit()
        return shown

    def apply(self) -> Optional[str]:
        """The previewed result (live mode: the live frame) as a layer; returns its uniqueId."""
        s, doc = self.session(), self.canvas.active_document()
        try:
            if self.live.frame_ready:
                return self.live.apply()
            if s is None or doc is None or s.state == GENERATING or not s.previews:
                return None
            check_canvas(s.canvas, doc.bounds(), SINCE_GENERATED)
            layer_id = previews.apply(s, doc, self.live.doc_key == doc.key)
        except PluginError as exc:
            self._set_error(exc)
            return None
        s.last_error = ""
        self.changed.emit()
        return layer_id

    def apply_all(self) -> List[str]:
        """Every result of the batch as layers in one new group."""
        s, doc = self.session(), self.canvas.active_document()
        if s is None or doc is None or s.state == GENERATING:
            return []
        try:
            check_canvas(s.canvas, doc.bounds(), SINCE_GENERATED)
            ids = previews.apply_all(s, doc, self.live.doc_key == doc.key)
        except PluginError as exc:
            self._set_error(exc)
            return []
        self.changed.emit()
        return ids

    def discard(self) -> None:
        s, doc = self.session(), self.canvas.active_document()
        if s is not None and doc is not None and s.state != GENERATING:
            previews.discard(s, doc, self.live.doc_key == doc.key)
            self.changed.emit()

    def tidy(self, doc_key: str) -> None:
        """Remove preview/live layers nothing tracks (a document just opened, saved with one)."""
        doc = self.canvas.document(doc_key)
        if doc is not None:
            previews.tidy(doc, self.sessions.get(doc_key), self.live.doc_key == doc_key)

    def reuse_settings(self, layer_id: Optional[str] = None) -> bool:
        """A layer's stored parameters (default: the active one's) into settings, or a sentence."""
        try:
            self.update_settings(**results_mod.reuse(self.canvas.active_document(), layer_id or ""))
        except PluginError as exc:
            return self._set_error(exc) or False
        return True

    def reuse_seed(self) -> None:
        if self.used_seed is not None:
            self.update_settings(seed=self.used_seed)

    def preprocess_to_layer(self, control_type: str, layer: str = "") -> bool:
        """Put the control map of ``layer`` (default: the active layer) into the document."""
        doc, done = self.canvas.active_document(), lambda _id: self.changed.emit()
        try:
            ref = layer or (doc.active_layer_id() if doc is not None else "")
            preprocess_to_layer(self.canvas, self.client, control_type, ref, done, self._set_error)
        except (PluginError, GeometryError) as exc:
            self._set_error(exc)
            return False
        return True

    def _set_error(self, error: Exception) -> None:
        """An error of the active document (shown while it is active), else of the plugin."""
        doc = self.canvas.active_document()
        if doc is not None:
            self._session_of(doc).last_error = str(error)
        else:
            self._error = str(error)
        self.changed.emit()

    def add_active_layer_as_control(self, control_type: str = "scribble") -> bool:
        return self.controls.add_active(control_type)

    def toggle_live(self) -> bool:
        """Live painting on/off for the active document; True when it is now on."""
        self._error = ""
        try:
            self.live.toggle()
        except PluginError as exc:
            self._set_error(exc)
        self.update_settings(live=self.live.running)
        return self.live.running
