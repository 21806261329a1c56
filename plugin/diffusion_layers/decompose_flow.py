"""Decompose into Layers (action ``diffusion_layers_decompose``, docker section "Layers").

The canvas (or the selection's region, with context like an inpaint) is sent as
``mode: "layers"`` to a checkpoint that can decompose (capabilities.layers: the chosen one when
it can, else the first the server lists); N RGBA layers come back, index 0 at the bottom. They
land as **one group** "Decomposed (N layers)" above the active layer, each layer at the region's
offset + its result's x/y, in stacking order; with a selection each layer is transparent where
nothing was selected. Adding the group is one undo step (krita_adapter ``add_group``: the layers
are in the group before the group enters the tree), so one Undo removes the whole group.

The results' ``composite_error`` (mean absolute difference, levels of 0..255, between the
layers' alpha-composite and the model's own composite of the input) is said in the docker
("… they recompose the picture within 2.1 levels (mean)"; above ``LARGE_COMPOSITE_ERROR`` also
that they do not add back up exactly) and kept per layer in the document annotation
``ANNOTATION_TYPE`` (saved in the .kra): ``{layer uniqueId: {"group", "layer_index", "layers",
"composite_error", "model"}}``.

No preview and no Apply: the group is the result (delete it, or undo). Cancel (the docker's or
Ctrl+Alt+X) stops the job, on the server too. Nothing here blocks Krita: the job runs on the
server; the read is one projection read, as Generate's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

from . import model_capabilities
from . import results as results_mod
from .canvas import CanvasDocument, NewLayer
from .edit_request import layer_tags
from .errors import NoDocument, PluginError, ResultMismatch
from .geometry import GeometryError, Rect, canvas_region, selection_region
from .job_watch import JobWatch, submit_job
from .model_capabilities import LayerRange
from .pixels import is_fully_transparent
from .placement import check_canvas
from .planning import selection_on_canvas
from .protocol import RAW_BGRA, RAW_GRAY, JobCreated, JobInfo, JobParams, ProgressEvent
from .qt import QObject, pyqtSignal
from .request import Part, params_part

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger(__name__)

IDLE, RUNNING, FAILED = "idle", "running", "failed"
NO_CHECKPOINT = (
    "No checkpoint on the server can decompose into layers: install Qwen-Image-Layered "
    "(models/diffusion_models/) and reconnect."
)
#: Mean difference (levels of 0..255) above which the layers visibly do not recompose the
#: picture (a few levels are rounding and soft edges; 8 is about 3 %: a visible shift).
LARGE_COMPOSITE_ERROR = 8.0
ANNOTATION_TYPE = "diffusion_layers_decomposed"
ANNOTATION_DESCRIPTION = "Diffusion Layers: how well each decomposed layer's group recomposes"


def placed_message(count: int, error: Optional[float]) -> str:
    """What the docker says when the group arrives; ``error``: the results' composite_error
    (levels of 0..255), None from a server that does not measure it."""
    if error is None:
        return f"Decomposed into {count} layers."
    text = (
        f"Decomposed into {count} layers — they recompose the picture within {error:.1f} "
        "levels (mean)."
    )
    if error > LARGE_COMPOSITE_ERROR:
        text += (
            " They do not add back up exactly: hide the group to compare them with the "
            "original before you rely on them."
        )
    return text


def group_name(count: int) -> str:
    return f"Decomposed ({count} layers)"


def layer_name(index: int, count: int) -> str:
    """Index 0 is the bottom layer."""
    return f"Layer {index + 1} of {count}"


@dataclass(frozen=True)
class _Job:
    """One decomposition in flight: what its callbacks need (``run`` tells a stale one)."""

    run: int
    key: str  # its document
    planned: Rect  # the document's bounds when it was sent
    params: JobParams
    region: Rect
    mask: Optional[bytes]


class DecomposeFlow(QObject):
    changed = pyqtSignal()
    progress = pyqtSignal(int, int)  # step, total steps

    def __init__(self, controller: "Controller") -> None:
        super().__init__(controller)
        self.controller = controller
        self.state = IDLE
        self.message = ""  # what the docker shows under the section (an error in red)
        self.group_ids: List[str] = []  # the layers of the last group made (bottom first)
        self._watch: Optional[JobWatch] = None
        self._job_id: Optional[str] = None
        self._run = 0  # start() counts; callbacks of an older run are dropped
        self.changed.connect(controller.changed)

    @property
    def busy(self) -> bool:
        return self.state == RUNNING

    # -- which checkpoint, how many layers -------------------------------------------------

    def checkpoint(self) -> Tuple[str, Optional[LayerRange]]:
        """(the checkpoint that decomposes, its layer range): the chosen one when it can, else
        the first one the server lists that can; ("", None) when none can."""
        models, chosen = self.controller.connection.models, self.controller.settings.model
        mine = model_capabilities.for_model(models, chosen)
        if mine.layers is not None:
            return mine.model, mine.layers
        for name in model_capabilities.able(models, "layers"):
            return name, model_capabilities.for_model(models, name).layers
        return "", None

    def unavailable(self) -> Optional[str]:
        """Why nothing can be decomposed (the docker's tooltip), None when it can."""
        return None if self.checkpoint()[1] is not None else NO_CHECKPOINT

    def layer_count(self) -> int:
        """The artist's count (settings.layers) inside the checkpoint's range, else its default."""
        span = self.checkpoint()[1] or LayerRange()
        wanted = self.controller.settings.layers
        return min(max(wanted, span.min), span.max) if wanted else span.default

    def set_layer_count(self, count: int) -> None:
        self.controller.update_settings(layers=int(count))

    # -- start ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Read the region and submit the job; False (with ``message``) when it cannot (one
        decomposition at a time: a second one, in any document, is refused with a sentence)."""
        if self.busy:
            self.message = (
                "A decomposition is already running: wait for its layers, or Cancel it first."
            )
            self.changed.emit()
            return False
        doc = self.controller.canvas.active_document()
        try:
            if doc is None:
                raise NoDocument("Open or create a document first.")
            doc.check_supported()
            params, parts, region, mask = self._build(doc)
        except (PluginError, GeometryError) as exc:
            self._fail(exc)
            return False
        self._run += 1
        job = _Job(self._run, doc.key, doc.bounds(), params, region, mask)
        self._job_id, self.message, self.state = None, "", RUNNING
        self.progress.emit(0, params.steps)
        log.info("decompose %s of %s into %s layers", region, doc.key, params.layers)
        submit_job(
            self.controller.client,
            parts,
            lambda created: self._created(created, job),
            lambda error: self._failed(job, error),
        )
        self.changed.emit()
        return True

    def _build(self, doc: CanvasDocument) -> Tuple[JobParams, List[Part], Rect, Optional[bytes]]:
        model, span = self.checkpoint()
        if span is None:
            raise PluginError(NO_CHECKPOINT)
        settings = self.controller.settings.check()
        canvas = doc.bounds()
        selection = selection_on_canvas(doc)
        region = canvas_region(canvas) if selection is None else selection_region(selection, canvas)
        image = doc.read_pixels(region)
        mask = None if selection is None else doc.read_selection(region)
        if is_fully_transparent(image):
            raise PluginError(
                "There is nothing to decompose: the canvas is empty there. Paint something, or "
                "select an area that has pixels."
            )
        capabilities = model_capabilities.for_model(self.controller.connection.models, model)
        sent = model_capabilities.effective_settings(settings, capabilities)
        if model != settings.model and capabilities.default_steps:  # not the artist's model
            sent = dataclasses.replace(sent, steps=capabilities.default_steps)
        params = JobParams(
            mode="layers",
            width=region.width,
            height=region.height,
            x=region.x,
            y=region.y,
            prompt=layer_tags(sent.prompt)[0],  # an optional description of the picture
            negative_prompt=sent.negative_prompt,
            model=model or None,
            steps=sent.steps,
            cfg_scale=sent.cfg_scale,
            sampler=sent.sampler,
            seed=sent.seed,
            batch=1,
            layers=self.layer_count(),
        )
        parts = [params_part(params, []), Part("image", RAW_BGRA, image)]
        if mask is not None:
            parts.append(Part("mask", RAW_GRAY, mask))
        return params, parts, region, mask

    # -- the job ----------------------------------------------------------------------------

    def _live(self, job: _Job) -> bool:
        return job.run == self._run and self.state == RUNNING

    def _failed(self, job: _Job, error: Exception) -> None:
        if self._live(job):
            self._fail(error)

    def _created(self, created: JobCreated, job: _Job) -> None:
        if not self._live(job):  # cancelled before the server answered
            self.controller.client.cancel(created.id, lambda: None, lambda _e: None)
            return
        self._job_id = created.id
        self._watch = self.controller.client.watch(
            created.id,
            lambda event: self._progress(job, event),
            lambda info: self._finished(info, job),
            lambda error: self._failed(job, error),
        )

    def _progress(self, job: _Job, event: ProgressEvent) -> None:
        if self._live(job):
            self.progress.emit(event.step, event.total_steps)

    def _finished(self, info: JobInfo, job: _Job) -> None:
        if not self._live(job):
            return
        self._watch = None
        if info.state == "cancelled":
            self.state, self.message = IDLE, "Decomposition cancelled."
            self.changed.emit()
            return
        if info.state == "failed" or not info.results:
            message = info.error.message if info.error else "the job ended without a result"
            self._fail(PluginError(f"Decompose into Layers failed: {message}"))
            return
        results_mod.fetch_all(
            self.controller.client,
            info.results,
            lambda items: self._place(items, job),
            lambda error: self._failed(job, error),
        )

    def _place(self, items: List[results_mod.Result], job: _Job) -> None:
        if not self._live(job):
            return
        doc = self.controller.canvas.document(job.key)
        params, region, mask = job.params, job.region, job.mask
        try:
            if doc is None:
                raise NoDocument("The document was closed before its layers arrived.")
            check_canvas(job.planned, doc.bounds())
            count = params.layers or len(items)
            if len(items) != count:
                raise ResultMismatch(
                    f"The server sent {len(items)} layers for a decomposition into {count}, so "
                    "nothing was placed. Make sure the server and the plugin are the same version."
                )
            placed = results_mod.place(items, region, mask)
            placed.sort(key=_stack_position)
            layers: List[NewLayer] = []
            for index, item in enumerate(placed):
                layer = results_mod.new_layer(item, params, region, mask)
                layers.append(NewLayer(layer_name(index, count), layer.pixels, layer.rect))
            self.group_ids = doc.add_group(group_name(count), layers)
            errors = [i.info.composite_error for i in placed if i.info.composite_error is not None]
            error = max(errors) if errors else None
            _record(doc, self.group_ids, params, error)
        except PluginError as exc:
            self._fail(exc)
            return
        self.state, self.message = IDLE, placed_message(count, error)
        self.changed.emit()

    # -- cancel and errors ------------------------------------------------------------------

    def cancel(self) -> bool:
        """Stop the job (on the server too); False when none runs."""
        if not self.busy:
            return False
        self._run += 1  # whatever the old job's callbacks bring is dropped
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._job_id is not None:
            self.controller.client.cancel(self._job_id, lambda: None, lambda _e: None)
        self.state, self.message = IDLE, "Decomposition cancelled."
        self.changed.emit()
        return True

    def _fail(self, error: Exception) -> None:
        log.warning("decompose failed: %s", error)
        self._watch = None
        self.state, self.message = FAILED, str(error)
        self.changed.emit()


def _record(doc: CanvasDocument, ids: List[str], params: JobParams, error: Optional[float]) -> None:
    """Each layer of the group (``ids``, bottom first) into the ``ANNOTATION_TYPE`` annotation."""
    try:
        data = json.loads(doc.read_annotation(ANNOTATION_TYPE) or b"{}")
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    count = len(ids)
    for index, layer_id in enumerate(ids):
        data[layer_id] = {
            "group": group_name(count),
            "layer_index": index,
            "layers": count,
            "composite_error": error,
            "model": params.model,
        }
    blob = json.dumps(data, separators=(",", ":")).encode("utf-8")
    doc.write_annotation(ANNOTATION_TYPE, ANNOTATION_DESCRIPTION, blob)


def _stack_position(item: results_mod.Result) -> int:
    """Bottom first: the result's ``layer_index`` (its ``index`` from a server without it)."""
    index = item.info.layer_index
    return item.info.index if index is None else index
