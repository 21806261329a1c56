"""Live painting, the core: watch a document, send a frame when it changed, show the rendering.

A QTimer polls the document every ``poll_ms``: it reads a cheap signature of the region (the
layer stack's state and the active, control and ``<layer:…>`` layers' own pixels, never the live
layer's, so a shown frame cannot trigger the next), the selection and the settings that shape a
frame. When it differs from the last frame sent, and has held still for ``debounce_ms`` (or
``max_wait_ms`` passed during a long stroke), the region is read without the live layer and sent
to ``/v1/live/{session}/frames``; with Edit on, with the references an Edit job would send.
Never more than one frame is in flight; the latest canvas always wins because the next frame
is read from the canvas only when the previous one came back.

The rendering goes into the document's ``[Live]`` layer (pixel updates only: no undo steps);
``apply`` copies the current frame into a real layer (one undo step). No krita import here:
the document is anything with the ``LiveDocument`` methods (krita_adapter implements them).
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol, Sequence, Tuple, cast

from . import edit_request, layer_params, styles
from .canvas import CanvasDocument, NewLayer
from .client import Client
from .errors import BackendError, NoDocument, PluginError
from .geometry import GeometryError, Rect
from .pixels import apply_mask, crop_gray
from .placement import SINCE_GENERATED, check_canvas, check_result, layer_name, mask_window
from .planning import live_region, read_control
from .protocol import RAW_BGRA, JobParams, LiveParams, LoraParams, ModelsInfo
from .qt import QObject, QRect, QTimer, pyqtSignal
from .request import Part, control_params, params_part
from .settings import ControlLayer, PluginSettings

log = logging.getLogger(__name__)

LIVE_PREFIX = "[Live]"
LIVE_LAYER_NAME = f"{LIVE_PREFIX} preview"
DEFAULT_STRENGTH = 0.6
POLL_MS = 120
DEBOUNCE_MS = 80
MAX_WAIT_MS = 400


class LiveDocument(Protocol):
    """What live mode needs from a document (krita_adapter.KritaDocument implements it)."""

    @property
    def key(self) -> str: ...

    def bounds(self) -> Rect: ...

    def check_supported(self) -> None: ...

    def selection_bounds(self) -> Optional[Rect]: ...

    def read_selection(self, rect: Rect) -> bytes: ...

    def read_layer(self, ref: str, rect: Rect) -> Optional[bytes]: ...

    def live_signature(self, rect: Rect, layers: Sequence[str] = ()) -> int:
        """Changes when the layer stack changes, or the pixels in rect of the active layer or
        of ``layers`` (the control layers) change; never because of the live layer."""
        ...

    def read_pixels_without_live(self, rect: Rect) -> bytes:
        """The visible image over rect as if the live layer were hidden (BGRA8)."""
        ...

    def show_live(self, layer: NewLayer) -> None:
        """Create the live layer once, then only replace its pixels (no undo steps)."""
        ...

    def remove_live(self) -> None: ...

    def add_layer(self, layer: NewLayer) -> str: ...

    def read_annotation(self, kind: str) -> bytes: ...

    def write_annotation(self, kind: str, description: str, data: bytes) -> None: ...


class LiveCanvas(Protocol):
    def active_document(self) -> Optional[LiveDocument]: ...

    def document(self, key: str) -> Optional[LiveDocument]: ...


@dataclass
class LiveFrame:
    pixels: bytes  # BGRA8, already masked to the selection
    rect: Rect  # canvas position
    seed: int
    number: int
    render_ms: float
    params: JobParams  # what made it, as the job that would (stored with an applied layer)
    canvas: Rect  # the document's bounds it was planned for (Apply refuses another canvas)


def session_id(doc_key: str) -> str:
    """The server's session id for a document key (``{uuid}`` → ``uuid``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "", doc_key)[:64]
    return cleaned or "document"


class LiveLoop(QObject):
    """One document's live mode (see the module doc). ``changed`` fires on every frame shown,
    on start and on stop; ``last_error`` says why live mode stopped on its own."""

    changed = pyqtSignal()

    def __init__(
        self,
        canvas: LiveCanvas,
        client: Client,
        settings: Callable[[], PluginSettings],
        parent: Optional[QObject] = None,
        poll_ms: int = POLL_MS,
        debounce_ms: int = DEBOUNCE_MS,
        max_wait_ms: int = MAX_WAIT_MS,
        controls: Optional[Callable[[str], List[ControlLayer]]] = None,
    ) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.controls = controls or (lambda _key: [])  # a document's controls, by its key
        self.models: Callable[[], Optional[ModelsInfo]] = lambda: None  # the server's /v1/models
        self.references = edit_request.EncodedReferences()  # Edit frames: unchanged PNGs
        self.client = client
        self.settings = settings
        self.debounce_s = debounce_ms / 1000.0
        self.max_wait_s = max_wait_ms / 1000.0
        self.strength = DEFAULT_STRENGTH
        self.record = False
        self.doc_key: Optional[str] = None
        self.frame: Optional[LiveFrame] = None
        self.frames_sent = 0
        self.frames_shown = 0
        self.last_error = ""
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._tick)
        self._in_flight, self._planned = False, Rect(0, 0, 0, 0)  # the canvas of the frame sent
        self._showing = False  # inside show_live, whose waits run Krita's event loop
        self._generation = 0  # bumps on stop/start: answers of an older run are dropped
        self._seen: Optional[int] = None  # signature at the last tick
        self._changed_at = 0.0
        self._requested: Optional[int] = None  # signature of the last frame sent
        self._last_send = 0.0

    # -- control --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.doc_key is not None

    def start(self, doc_key: str) -> None:
        """Start watching ``doc_key`` (stops watching any other document first)."""
        if self.doc_key == doc_key:
            return
        self.stop()
        self.doc_key, self.last_error, self.frame = doc_key, "", None
        self.frames_sent = self.frames_shown = 0
        self._seen = self._requested = None
        self._in_flight, self._generation = False, self._generation + 1  # drop older replies
        self._changed_at = self._last_send = 0.0
        self._timer.start()
        log.info("live mode on for %s", doc_key)
        self._tick()
        self.changed.emit()

    def stop(self, error: str = "") -> None:
        """Stop; the live layer goes and the server's session ends. ``error`` is kept."""
        if self.doc_key is None:
            return
        key, self.doc_key = self.doc_key, None
        self._timer.stop()
        self._generation += 1
        self._in_flight = False
        self.frame = None
        self.last_error = error
        doc = self.canvas.document(key)
        if doc is not None:
            doc.remove_live()
        self.client.close_live(session_id(key), lambda: None, lambda _e: None)
        log.info("live mode off for %s%s", key, f": {error}" if error else "")
        self.changed.emit()

    def toggle(self) -> bool:
        """Off when running, else on for the active document; True when it is now on.
        Raises NoDocument / UnsupportedDocument when it cannot run there."""
        if self.running:
            self.stop()
            return False
        doc = self.canvas.active_document()
        if doc is None:
            raise NoDocument("Open or create a document first.")
        doc.check_supported()
        self.start(doc.key)
        return True

    @property
    def frame_ready(self) -> bool:
        """There is a frame to apply and its document is the active one."""
        doc = self.canvas.active_document()
        return self.frame is not None and doc is not None and doc.key == self.doc_key

    def apply(self) -> Optional[str]:
        """Copy the current frame into a new layer above the active one (one undo step), with
        what made it stored like a generated layer's; returns its uniqueId."""
        doc = self.canvas.document(self.doc_key) if self.doc_key else None
        if doc is None or self.frame is None:
            return None
        frame = self.frame
        check_canvas(frame.canvas, doc.bounds(), SINCE_GENERATED)  # cropped, scaled …: refused
        name = layer_name(frame.params.prompt, frame.seed)
        layer_id = doc.add_layer(NewLayer(name, frame.pixels, frame.rect))
        layer_params.remember(cast(CanvasDocument, doc), layer_id, frame.params, frame.seed, 0)
        region, mask = live_region(doc)  # the canvas now shows the frame: no new one for that
        self._seen = self._requested = self._signature(doc, region, mask)
        return layer_id

    def frame_strength(self) -> float:
        """The docker's strength when it is below 100 % (refine), else ``self.strength``."""
        chosen = self.settings().strength
        return chosen if 0.0 < chosen < 1.0 else self.strength

    # -- the loop -------------------------------------------------------------------------

    def _signature(self, doc: LiveDocument, region: Rect, mask: Optional[bytes]) -> int:
        s = self.settings()
        strength = self.frame_strength()
        shape = (region, s.prompt, s.negative_prompt, s.model, s.seed, strength, self.record)
        loras = [(lo.name, lo.weight) for lo in s.loras]
        chosen = self.controls(doc.key)
        controls = [(c.ref, c.type, c.strength, c.start, c.end) for c in chosen]
        text = repr((shape, loras, controls)).encode("utf-8")
        pixels = doc.live_signature(region, edit_request.watched_layers(s, chosen))
        value = zlib.crc32(text, pixels & 0xFFFFFFFF)
        return zlib.crc32(mask, value) if mask is not None else value

    def _tick(self) -> None:
        key = self.doc_key
        if key is None or self._showing:  # not while a frame is shown (Krita's waits run events)
            return
        doc = self.canvas.document(key)
        if doc is None:
            return self.stop("The document was closed.")
        # 1. Has anything that shapes a frame changed since the last tick / the last frame?
        try:
            region, mask = live_region(doc)
            signature = self._signature(doc, region, mask)
        except (PluginError, GeometryError) as exc:
            return self.stop(str(exc))
        now = time.monotonic()
        if signature != self._seen:
            self._seen, self._changed_at = signature, now
        if self._in_flight or signature == self._requested:
            return
        # 2. Debounce: wait until it holds still, but not forever during a long stroke.
        settled = now - self._changed_at >= self.debounce_s
        overdue = now - self._last_send >= self.max_wait_s
        if settled or overdue:
            self._send(doc, region, mask, signature)

    def _send(self, doc: LiveDocument, region: Rect, mask: Optional[bytes], signature: int) -> None:
        generation = self._generation
        try:
            parts, params = self._parts(doc, region)
        except (PluginError, GeometryError) as exc:
            return self.stop(str(exc))
        if generation != self._generation or self.doc_key is None:
            return  # stopped while the frame was read (Krita's waitForDone runs events)
        self._in_flight, self._requested, self._planned = True, signature, doc.bounds()
        self._last_send = time.monotonic()
        self.frames_sent += 1
        self.client.live_frame(
            session_id(doc.key),
            parts,
            lambda data, headers: self._arrived(generation, region, mask, params, data, headers),
            lambda error: self._failed(generation, error),
        )

    def _parts(self, doc: LiveDocument, region: Rect) -> Tuple[List[Part], LiveParams]:
        s = self.settings()
        params = LiveParams(
            width=region.width,
            height=region.height,
            x=region.x,
            y=region.y,
            prompt=edit_request.sent_prompt(s),  # Edit on: an instruction, without <layer:…> tags
            negative_prompt=s.negative_prompt,
            model=s.model or None,
            strength=self.frame_strength(),
            seed=s.seed,
            loras=[LoraParams(name=lo.name, weight=lo.weight) for lo in s.loras],
            record=self.record,
            style=s.style or None,
            edit=s.edit,
        )
        parts = [Part("image", RAW_BGRA, doc.read_pixels_without_live(region))]
        if s.edit:  # the tags' and reference rows' whole layers, as an Edit job sends them
            page, chosen = cast(CanvasDocument, doc), self.controls(doc.key)
            refs = edit_request.edit_references(
                self.canvas, page, s, chosen, self.models(), self.references
            )
            edit_request.add_references(params.controls, parts, refs)
        for index, control in enumerate([] if s.edit else self.controls(doc.key)):
            pixels = read_control(cast(CanvasDocument, doc), control, region).pixels
            name = f"control_{index}"
            params.controls.append(control_params(control, name))
            parts.append(Part(name, RAW_BGRA, pixels))
        head = params_part(params, styles.live_omitted(s))  # with a style: left to it
        return [head] + parts, params

    def _arrived(
        self,
        generation: int,
        region: Rect,
        mask: Optional[bytes],
        params: LiveParams,
        data: bytes,
        headers: dict,
    ) -> None:
        if generation != self._generation or self.doc_key is None:
            return
        self._in_flight = False
        doc = self.canvas.document(self.doc_key)
        if doc is None:  # closed: the frame is dropped, never written
            return self.stop("The document was closed.")
        if doc.bounds() != self._planned:  # cropped, scaled …: never shown, planned again
            self._requested = None
            return
        width, height = int(headers.get("x-width", 0)), int(headers.get("x-height", 0))
        if width <= 0 or height <= 0 or len(data) != width * height * 4:
            self.stop(f"The server sent a live frame of {len(data)} bytes for {width}x{height}.")
            return
        dx, dy = int(headers.get("x-offset-x", 0)), int(headers.get("x-offset-y", 0))
        rect = Rect(region.x + dx, region.y + dy, width, height)
        try:  # a frame is the whole region (the server gets no mask): anything else is refused
            check_result(region, rect, None, "live frame")
        except PluginError as exc:
            return self.stop(str(exc))
        pixels = data  # the selection's softness is applied here, once (the server had no mask)
        if mask is not None:
            window = mask_window(region, rect)
            qrect = QRect(window.x, window.y, window.width, window.height)
            pixels = apply_mask(
                data, crop_gray(mask, region.width, region.height, qrect), width, height
            )
        seed = int(headers.get("x-seed", 0))
        made_by = JobParams(
            mode="edit" if params.edit else "img2img",
            width=params.width,
            height=params.height,
            x=params.x,
            y=params.y,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            model=params.model,
            strength=params.strength,
            steps=int(headers.get("x-steps", 0) or 1),
            cfg_scale=float(headers.get("x-cfg-scale", 0.0)),
            sampler=headers.get("x-sampler", ""),
            seed=seed,
            clip_skip=params.clip_skip,
            controls=params.controls,
            loras=params.loras,
        )
        self.frame = LiveFrame(
            pixels,
            rect,
            seed,
            int(headers.get("x-frame", 0)),
            float(headers.get("x-render-ms", 0.0)),
            made_by,
            self._planned,
        )
        self._showing = True
        try:  # show_live refuses a document closed meanwhile (NoDocument)
            doc.show_live(NewLayer(LIVE_LAYER_NAME, pixels, rect))
        except PluginError as exc:  # Krita did not take the [Live] layer: say so, stop
            return self.stop(str(exc))
        finally:
            self._showing = False
        self.frames_shown += 1
        self.changed.emit()

    def _failed(self, generation: int, error: PluginError) -> None:
        if generation != self._generation or self.doc_key is None:
            return
        self._in_flight = False
        if isinstance(error, BackendError) and error.code == "superseded":
            self._requested = None  # send the current canvas again on the next tick
            return
        self.stop(f"Live mode stopped: {error}")
