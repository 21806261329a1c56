"""Finished results: fetch them raw, place them on the canvas, turn them into layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import layer_params
from .canvas import CanvasDocument, NewLayer
from .client import Client, OnError
from .errors import NoDocument, PluginError, ResultMismatch
from .geometry import Rect
from .pixels import crop_gray
from .placement import check_result, layer_name, mask_window, preview_name, result_rect
from .protocol import JobParams, ResultInfo
from .qt import QRect


@dataclass
class Result:
    info: ResultInfo
    pixels: bytes  # BGRA8, info.width x info.height
    rect: Rect = Rect(0, 0, 0, 0)  # canvas position, set by place()

    @property
    def seed(self) -> int:
        return self.info.seed


def fetch_all(
    client: Client,
    infos: List[ResultInfo],
    on_ok: Callable[[List[Result]], None],
    on_error: OnError,
) -> None:
    """Fetch every result's raw BGRA in parallel; ``on_ok`` once all arrived, in index order."""
    infos = sorted(infos, key=lambda r: r.index)
    got: Dict[int, Result] = {}
    failed: List[PluginError] = []
    if not infos:
        on_ok([])
        return

    def arrived(info: ResultInfo, data: bytes, width: int, height: int) -> None:
        if failed:
            return
        if (width, height) != (info.width, info.height):
            failed.append(
                PluginError(
                    f"result {info.index} is {width}x{height}, expected {info.width}x{info.height}"
                )
            )
            on_error(failed[0])
            return
        got[info.index] = Result(info, data)
        if len(got) == len(infos):
            on_ok([got[i.index] for i in infos])

    def broke(error: PluginError) -> None:
        if not failed:
            failed.append(error)
            on_error(error)

    for info in infos:
        client.fetch_raw(info.raw_url, lambda d, w, h, info=info: arrived(info, d, w, h), broke)


def place(items: List[Result], region: Rect, mask: Optional[bytes] = None) -> List[Result]:
    """Canvas positions of the results; raises ResultMismatch (nothing placed) when any does
    not cover what was asked (``placement.check_result``), or when there is none."""
    if not items:
        raise PluginError("The server finished the job without any result.")
    for item in items:
        rect = result_rect(region, item.info.x, item.info.y, item.info.width, item.info.height)
        check_result(region, rect, mask)
        if len(item.pixels) != rect.width * rect.height * 4:
            raise ResultMismatch(
                f"The server sent {len(item.pixels)} bytes for a {rect.width}x{rect.height} px "
                "result, so nothing was placed. Generate again."
            )
        item.rect = rect
    return items


_KEEP_SELECTED = bytes([0] + [255] * 255)


def clip_to_selection(pixels: bytes, mask: bytes) -> bytes:
    """Alpha 0 where the selection is 0, every other byte unchanged.

    The server's layer already carries the selection's softness (its alpha is the soft
    selection value, once); multiplying by the mask again would square it (v²/255). This only
    guarantees nothing shows where nothing was selected."""
    if len(mask) * 4 != len(pixels):
        raise ResultMismatch(f"mask of {len(mask)} px for a result of {len(pixels) // 4} px")
    if mask.count(0) == 0:
        return pixels
    keep = mask.translate(_KEEP_SELECTED)
    alpha = int.from_bytes(pixels[3::4], "little") & int.from_bytes(keep, "little")
    out = bytearray(pixels)
    out[3::4] = alpha.to_bytes(len(mask), "little")
    return bytes(out)


def new_layer(
    item: Result,
    params: Optional[JobParams],
    region: Optional[Rect],
    mask: Optional[bytes],
    preview: bool = False,
) -> NewLayer:
    """A result as a layer: its own alpha (the server applied the selection's softness), and
    transparent wherever the selection is empty."""
    prompt = params.prompt if params is not None else ""
    pixels = item.pixels
    if mask is not None and region is not None:
        window = mask_window(region, item.rect)
        qrect = QRect(window.x, window.y, window.width, window.height)
        pixels = clip_to_selection(pixels, crop_gray(mask, region.width, region.height, qrect))
    name = preview_name(prompt, item.seed) if preview else layer_name(prompt, item.seed)
    return NewLayer(name, pixels, item.rect)


def group_name(params: JobParams) -> str:
    return f"{layer_name(params.prompt, params.seed if params.seed >= 0 else 0).rsplit(' #', 1)[0]} ×{params.batch}"


def remember(doc: CanvasDocument, layer_id: str, params: JobParams, item: Result) -> None:
    layer_params.remember(doc, layer_id, params, item.seed, item.info.index)


def recall(doc: CanvasDocument, layer_id: str) -> Optional[Tuple[JobParams, int]]:
    return layer_params.recall(doc, layer_id)


def reuse(doc: Optional[CanvasDocument], layer_id: str = "") -> Dict[str, Any]:
    """The settings stored for layer ``layer_id`` (default: the active one) of ``doc``
    (``settings_from``). Raises NoDocument without a document, PluginError (a sentence naming the
    layer) for one that has none stored: painted, decomposed or imported layers keep none."""
    if doc is None:
        raise NoDocument("Open or create a document first.")
    ref = layer_id or doc.active_layer_id()
    found = recall(doc, ref) if ref else None
    if found is None:
        name = doc.layer_name(ref) if ref else None
        raise PluginError(
            f"{f'The layer {name!r}' if name else 'That layer'} has no stored settings to reuse: "
            "only layers made by Apply (Generate, Edit or Live) keep theirs. Select one of those."
        )
    return settings_from(*found)


def settings_from(params: JobParams, seed: int) -> Dict[str, Any]:
    """The settings that reproduce a stored layer (its own seed, fixed; Edit on for an edit's
    layer, whose prompt is the instruction as sent, without its ``<layer:…>`` tags)."""
    return {
        "edit": params.mode == "edit",
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "model": params.model or "",
        "strength": params.strength,
        "steps": params.steps,
        "cfg_scale": params.cfg_scale,
        "sampler": params.sampler,
        "seed": seed,
    }
