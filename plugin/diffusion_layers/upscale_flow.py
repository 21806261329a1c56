"""Upscale / Refine detail (action ``diffusion_layers_upscale``, docker section "Upscale").

* **New document**: the whole canvas projection is read in strips (one per event-loop turn),
  sent as ``mode: "upscale"``, and the result opens as a new document of exactly
  round(W*f) x round(H*f) in the source's colour space, written in strips too.
* **Refine in place**: factor 1 + refine over the selection's bounds (its soft values travel
  as the mask), else the active layer's bounds, else the canvas. The job then belongs to the
  document's session like any other: progress, cancel, the ``[Preview]`` layer and Apply (one
  undo step) are the controller's.

Nothing here blocks Krita for long: every read and write is cut into strips (``turns``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Set, Tuple

from .canvas import CanvasDocument
from .errors import NoDocument, PluginError, ResultMismatch
from .geometry import Rect
from .job_watch import JobWatch, submit_job
from .krita_documents import NewDocument, SourceInfo
from .model_capabilities import check_mode, effective_settings
from .placement import check_canvas
from .planning import control_image, selection_on_canvas
from .protocol import JobCreated, JobInfo, JobParams, ProgressEvent
from .qt import QObject, pyqtSignal
from .request import Part
from .session import GENERATING
from .settings import ControlLayer
from .styles import check_inline_loras
from .turns import Turns, read_strips, write_strips
from .upscale_request import UpscalePlan, build_upscale, plan_upscale
from .upscale_settings import IN_PLACE, UpscaleSettings

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger(__name__)

IDLE, READING, RUNNING, WRITING, FAILED = "idle", "reading", "running", "writing", "failed"


class UpscaleFlow(QObject):
    changed = pyqtSignal()
    progress = pyqtSignal(int, int)  # step, total steps of a "New document" job

    def __init__(self, controller: "Controller") -> None:
        super().__init__(controller)
        self.controller = controller
        self.settings = UpscaleSettings.load(controller.store)
        self.state = IDLE
        self.message = ""  # what the docker shows under the section (an error in red)
        self.new_document = ""  # key of the last document an upscale opened
        self._turns: Optional[Turns] = None
        self._watch: Optional[JobWatch] = None
        self._job_id: Optional[str] = None
        self._target: Optional[NewDocument] = None  # the new document being written
        self._cancelled = False
        self.changed.connect(controller.changed)

    # -- settings -------------------------------------------------------------------------

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if not hasattr(self.settings, key):
                raise AttributeError(f"unknown upscale setting {key!r}")
            setattr(self.settings, key, value)
        self.settings.save(self.controller.store)
        self.changed.emit()

    @property
    def busy(self) -> bool:
        return self.state in (READING, RUNNING, WRITING)

    # -- start ----------------------------------------------------------------------------

    def start(self) -> bool:
        """Read the region and submit the job; False (with ``message``) when it cannot."""
        if self.busy:
            return False
        doc = self.controller.canvas.active_document()
        try:
            if doc is None:
                raise NoDocument("Open or create a document first.")
            doc.check_supported()
            plan = self._plan(doc)
        except PluginError as exc:
            self._fail(exc)
            return False
        self._cancelled, self.message, self.state = False, "", READING
        planned = doc.bounds()
        image: List[bytes] = []
        mask: List[bytes] = []
        # The refine pass carries the control layers like img2img (contract B); read in strips.
        controls = self.controller.controls.of(doc.key) if plan.refine else []
        control_strips: List[List[bytes]] = [[] for _ in controls]
        missing: Set[int] = set()

        def layer(index: int) -> Any:
            def one(strip: Rect) -> bytes:
                pixels = doc.read_layer(controls[index].ref, strip)
                if pixels is None:
                    missing.add(index)
                return pixels or b""

            return one

        def read(source: Any) -> Any:
            def one(strip: Rect) -> bytes:
                if not doc.is_open():
                    raise NoDocument("The document was closed while it was being read.")
                return source(strip)

            return one

        def steps() -> Any:
            yield from read_strips(read(doc.read_pixels), plan.region, image)
            if plan.selection:
                yield from read_strips(read(doc.read_selection), plan.region, mask, 1 << 22)
            for index, out in enumerate(control_strips):
                yield from read_strips(read(layer(index)), plan.region, out)

        def done() -> None:
            pixels, sel = b"".join(image), (b"".join(mask) if plan.selection else None)
            image.clear()
            mask.clear()
            read_controls = [
                (c, None if i in missing else b"".join(control_strips[i]))
                for i, c in enumerate(controls)
            ]
            self._submit(doc, planned, plan, pixels, sel, read_controls)

        self._turns = Turns(steps(), done, self._fail, self).start()
        self.changed.emit()
        return True

    def _plan(self, doc: CanvasDocument) -> UpscalePlan:
        up = self.settings
        selection = layer = None
        if up.target == IN_PLACE:
            session = self.controller.session()
            if session is not None and session.state == GENERATING:
                raise PluginError("A job is running for this document: wait or cancel it.")
            selection = selection_on_canvas(doc)
            if selection is None:
                layer = self._documents().layer_bounds(doc.key)
        return plan_upscale(up, doc.bounds(), selection, layer)

    def _documents(self) -> Any:
        return self.controller.canvas.documents()  # type: ignore[attr-defined]

    def _submit(
        self,
        doc: CanvasDocument,
        planned: Rect,
        plan: UpscalePlan,
        image: bytes,
        mask: Optional[bytes],
        read_controls: Sequence[Tuple[ControlLayer, Optional[bytes]]] = (),
    ) -> None:
        self._turns = None
        try:
            if not doc.is_open():
                raise NoDocument("The document was closed while it was being read.")
            check_canvas(planned, doc.bounds())
            settings = self.controller.settings
            if plan.refine:  # the refine pass runs the checkpoint, checked as Generate does
                models = self.controller.connection.models
                check_inline_loras(settings.prompt, settings.negative_prompt, models)
                capabilities = check_mode(models, settings.model, "upscale")
                settings = effective_settings(settings, capabilities)
            controls = [control_image(c, px, plan.region) for c, px in read_controls]
            params, parts = build_upscale(settings, self.settings, plan, image, mask, controls)
            if self.settings.target == IN_PLACE:
                self._hand_over(doc, planned, plan, params, parts, mask)
                return
            source = self._documents().source(doc.key)
        except PluginError as exc:
            self._fail(exc)
            return
        self.state = RUNNING
        self.progress.emit(0, params.steps)
        log.info("upscale x%g of %s into a new document", plan.factor, plan.region)
        submit_job(
            self.controller.client,
            parts,
            lambda created: self._created(created, plan, source),
            self._fail,
        )
        self.changed.emit()

    def _hand_over(
        self,
        doc: CanvasDocument,
        planned: Rect,
        plan: UpscalePlan,
        params: JobParams,
        parts: List[Part],
        mask: Optional[bytes],
    ) -> None:
        """Refine in place: the document's session runs the job (progress, cancel, preview,
        Apply), exactly as for a generated result."""
        c = self.controller
        session = c._session_of(doc)  # pyright: ignore[reportPrivateUsage]
        if session.state == GENERATING:
            raise PluginError("A job is running for this document: wait or cancel it.")
        session.state, session.last_error, session.cancel_requested = GENERATING, "", False
        session.params, session.region, session.mask = params, plan.region, mask
        session.canvas = planned
        session.job_id, session.step, session.total_steps = None, 0, params.steps
        log.info("refine in place of %s in %s", plan.region, doc.key)
        submit_job(
            c.client,
            parts,
            lambda created: c._created(session, created),  # pyright: ignore[reportPrivateUsage]
            lambda error: c._job_failed(session, error),  # pyright: ignore[reportPrivateUsage]
        )
        self.state = IDLE
        self.changed.emit()

    # -- the "New document" job -----------------------------------------------------------

    def _created(self, created: JobCreated, plan: UpscalePlan, source: SourceInfo) -> None:
        self._job_id = created.id
        if self._cancelled:
            self.controller.client.cancel(created.id, lambda: None, lambda _e: None)
            return
        self._watch = self.controller.client.watch(
            created.id,
            self._progress,
            lambda info: self._finished(info, plan, source),
            self._fail,
        )

    def _progress(self, event: ProgressEvent) -> None:
        if self.state == RUNNING:
            self.progress.emit(event.step, event.total_steps)

    def _finished(self, info: JobInfo, plan: UpscalePlan, source: SourceInfo) -> None:
        self._watch = None
        if self.state != RUNNING:
            return
        if info.state == "cancelled":
            self.state = IDLE
            self.changed.emit()
            return
        if info.state == "failed" or not info.results:
            message = info.error.message if info.error else "the job ended without a result"
            self._fail(PluginError(f"Upscale failed: {message}"))
            return
        result = info.results[0]
        if (result.width, result.height) != (plan.out_width, plan.out_height):
            self._fail(
                ResultMismatch(
                    f"The server sent a {result.width}x{result.height} px result for an "
                    f"upscale to {plan.out_width}x{plan.out_height} px, so no document was "
                    "made. Make sure the server and the plugin are the same version."
                )
            )
            return
        self.controller.client.fetch_raw(
            result.raw_url, lambda data, w, h: self._write(data, w, h, plan, source), self._fail
        )

    def _write(
        self, data: bytes, width: int, height: int, plan: UpscalePlan, source: SourceInfo
    ) -> None:
        if self.state != RUNNING:
            return
        if (width, height) != (plan.out_width, plan.out_height):
            self._fail(ResultMismatch(f"The result is {width}x{height} px, not the size asked."))
            return
        name = f"{source.name} x{plan.factor:g}"
        resolution = source.resolution * plan.factor  # the same print size, more detail
        self.state = WRITING
        try:
            target = self._documents().create(
                width, height, name, SourceInfo(source.name, source.space, resolution)
            )
        except PluginError as exc:
            self._fail(exc)
            return
        self._target = target
        self.changed.emit()
        steps = write_strips(target.write, data, Rect(0, 0, width, height))
        self._turns = Turns(
            steps, lambda: self._shown(target), lambda exc: self._dropped(target, exc), self
        ).start()

    def _shown(self, target: NewDocument) -> None:
        self._turns, self._target = None, None
        try:
            target.show()
        except PluginError as exc:
            self._fail(exc)
            return
        self.new_document, self.state, self.message = target.key, IDLE, ""
        self.changed.emit()

    def _dropped(self, target: NewDocument, error: Exception) -> None:
        target.close()
        self._fail(error)

    # -- cancel and errors ----------------------------------------------------------------

    def cancel(self) -> bool:
        """Stop reading, the job (on the server too) or the writing of a new document."""
        if not self.busy:
            return False
        self._cancelled = True
        if self._turns is not None:
            self._turns.stop()
            self._turns = None
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._job_id is not None and self.state == RUNNING:
            self.controller.client.cancel(self._job_id, lambda: None, lambda _e: None)
        if self._target is not None:  # a half-written new document goes
            self._target.close()
            self._target = None
        self.state, self.message = IDLE, "Upscale cancelled."
        self.changed.emit()
        return True

    def _fail(self, error: Exception) -> None:
        log.warning("upscale failed: %s", error)
        self._turns, self._watch, self._target = None, None, None
        self.state, self.message = FAILED, str(error)
        self.changed.emit()
