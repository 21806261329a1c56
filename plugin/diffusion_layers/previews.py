"""The ``[Preview]`` layer's life: show, apply, apply all, discard — safe under undo/redo.

Krita makes adding or removing a layer an undo step, so the artist's Ctrl+Z / Ctrl+Shift+Z can
take a preview away or bring an old one back at any time. The rules:

* Every preview layer a document's session made is remembered by uniqueId (``Session.previews``)
  with the result it shows. The session is *previewing* exactly while one of them is in the
  document, whatever undo, redo, delete or move did to it; the newest one there is the preview.
* **Apply** turns that preview layer itself into the artist's layer (renamed, unlocked): no
  removal step is left behind, so undoing the preview's addition removes the applied layer and
  nothing can come back as an orphan. A preview that is gone is reported, never guessed at.
* Discard and Apply all remove the preview (an undo step); undoing them brings it back as the
  session's preview again, not as a stray.
* ``[Preview]``/``[Live]`` layers nobody tracks (a duplicated preview, one saved in a file) are
  removed whenever the plugin acts on the document, and when a document is opened.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional

from . import layer_params
from . import results as results_mod
from .canvas import CanvasDocument
from .errors import PluginError
from .placement import SINCE_GENERATED, check_canvas, layer_name
from .qt import QObject
from .session import ERROR, GENERATING, IDLE, PREVIEW, Session, Shown
from .turns import STRIP_PIXELS, Turns, write_strips

#: How often a result waiting for the image to be idle asks again (ms).
BUSY_WAIT_MS = 20

GONE = (
    "The preview layer is no longer in the document (undone or deleted), so there is nothing "
    "to apply. Click a result thumbnail to preview it again."
)


def current(s: Session, doc: CanvasDocument) -> str:
    """The uniqueId of the session's preview that is in the document now, or ''."""
    for preview_id in reversed(list(s.previews)):
        if doc.has_node(preview_id):
            return preview_id
    return ""


def state(s: Session, doc: Optional[CanvasDocument]) -> str:
    """The session's state as the artist sees it: previewing iff its preview is there."""
    if s.state in (GENERATING, ERROR) or doc is None:
        return s.state
    return PREVIEW if current(s, doc) else IDLE


def sweep(s: Session, doc: CanvasDocument, keep_live: bool) -> None:
    """Remove untracked temporary layers and every tracked preview but the current one."""
    doc.remove_strays([current(s, doc)], keep_live=keep_live)


def tidy(doc: CanvasDocument, s: Optional[Session], keep_live: bool) -> None:
    """Remove the strays of a document the plugin may never have seen (opened from a file)."""
    doc.remove_strays([current(s, doc)] if s is not None else [], keep_live=keep_live)


def show(s: Session, doc: CanvasDocument, index: int, keep_live: bool = False) -> bool:
    """Preview result ``index`` (replacing the current preview in place)."""
    if not 0 <= index < len(s.results) or s.params is None or s.region is None:
        return False
    shown = Shown(s.results[index], s.params, s.region, s.mask)
    layer = results_mod.new_layer(shown.result, s.params, s.region, s.mask, preview=True)
    _shown(s, doc, index, doc.show_preview(layer, current(s, doc)), shown, keep_live)
    return True


def show_first(
    s: Session,
    doc: CanvasDocument,
    keep_live: bool,
    done: Callable[[Optional[Exception]], None],
    parent: Optional[QObject] = None,
) -> None:
    """Preview a finished job's first result, then ``done(None)``, or ``done(error)`` when it
    could not be (the document closed, the canvas changed, Krita refused the layer).

    A result of up to one strip (``turns.STRIP_PIXELS``) is shown at once when the image is
    idle; a larger one is written strip by strip into a layer outside the tree, one strip per
    event-loop turn (``s.placing``: stopping it drops the layer unseen), and joins the tree when
    complete, so Krita stays responsive while a large result lands. Either waits until no
    stroke runs on the image (the artist's, a crop: Krita changes the canvas size only when
    the crop's stroke ends), so the canvas check sees the canvas the result lands on."""
    if not s.results or s.params is None or s.region is None:
        return done(PluginError("The job ended without a result."))
    shown, canvas = Shown(s.results[0], s.params, s.region, s.mask), s.canvas
    layer = results_mod.new_layer(shown.result, s.params, s.region, s.mask, preview=True)
    if layer.rect.width * layer.rect.height <= STRIP_PIXELS and doc.idle():
        try:
            _shown(s, doc, 0, doc.show_preview(layer, current(s, doc)), shown, keep_live)
        except PluginError as exc:
            return done(exc)
        return done(None)
    draft = doc.draft_layer(layer.name)

    def steps() -> Iterator[Optional[int]]:
        yield from write_strips(draft.write, layer.pixels, layer.rect)
        while not doc.idle():  # a stroke runs (a crop changes the canvas only when it ends)
            yield BUSY_WAIT_MS
        check_canvas(canvas, doc.bounds(), SINCE_GENERATED)  # cropped meanwhile: refused
        _shown(s, doc, 0, doc.show_preview(layer, current(s, doc), draft), shown, keep_live)
        yield  # the docker hears of it on the next turn, not in the same stall as the insert

    def finish(error: Optional[Exception]) -> None:
        s.placing = None
        done(error)

    s.placing = Turns(steps(), lambda: finish(None), finish, parent).start()


def _shown(
    s: Session, doc: CanvasDocument, index: int, preview_id: str, shown: Shown, keep_live: bool
) -> None:
    """``preview_id`` now shows result ``index`` (``shown``): the session is previewing it."""
    s.remember(preview_id, shown)
    s.selected, s.discarded, s.state = index, False, PREVIEW
    sweep(s, doc, keep_live)


def apply(s: Session, doc: CanvasDocument, keep_live: bool = False) -> str:
    """The preview becomes the artist's layer; returns its uniqueId. Raises PluginError (a
    sentence) when the preview is gone."""
    preview_id = current(s, doc)
    if not preview_id:
        raise PluginError(GONE)
    shown = s.previews.pop(preview_id)
    name = layer_name(shown.params.prompt, shown.result.seed)
    if not doc.keep_preview(preview_id, name):
        raise PluginError(GONE)
    results_mod.remember(doc, preview_id, shown.params, shown.result)
    s.state = IDLE
    sweep(s, doc, keep_live)
    return preview_id


def apply_all(s: Session, doc: CanvasDocument, keep_live: bool = False) -> List[str]:
    """Every result of the latest job in one new group where the preview is."""
    if not s.results or s.params is None or s.region is None:
        return []
    layers = [results_mod.new_layer(item, s.params, s.region, s.mask) for item in s.results]
    ids = doc.add_group(results_mod.group_name(s.params), layers, current(s, doc))
    for index, layer_id in enumerate(ids):
        layer_params.remember(
            doc, layer_id, s.params, s.results[index].seed, s.results[index].info.index
        )
    s.state = IDLE
    sweep(s, doc, keep_live)
    return ids


def discard(s: Session, doc: CanvasDocument, keep_live: bool = False) -> None:
    preview_id = current(s, doc)
    if preview_id:
        doc.remove_preview(preview_id)
    s.state, s.discarded = IDLE, True
    sweep(s, doc, keep_live)
