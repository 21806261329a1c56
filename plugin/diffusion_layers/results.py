"""Finished results: fetch them raw, place them on the canvas, turn them into layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import layer_params
from .canvas import CanvasDocument, NewLayer
from .client import Client, OnError
from .errors import PluginError
from .geometry import Rect
from .pixels import apply_mask, crop_gray
from .placement import layer_name, mask_window, preview_name, result_rect
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


def place(items: List[Result], region: Rect) -> List[Result]:
    for item in items:
        item.rect = result_rect(region, item.info.x, item.info.y, item.info.width, item.info.height)
    return items


def new_layer(
    item: Result,
    params: Optional[JobParams],
    region: Optional[Rect],
    mask: Optional[bytes],
    preview: bool = False,
) -> NewLayer:
    """A result as a layer: transparent outside the selection when the job had one."""
    prompt = params.prompt if params is not None else ""
    pixels = item.pixels
    if mask is not None and region is not None:
        window = mask_window(region, item.rect)
        qrect = QRect(window.x, window.y, window.width, window.height)
        pixels = apply_mask(
            pixels,
            crop_gray(mask, region.width, region.height, qrect),
            item.rect.width,
            item.rect.height,
        )
    name = preview_name(prompt, item.seed) if preview else layer_name(prompt, item.seed)
    return NewLayer(name, pixels, item.rect)


def group_name(params: JobParams) -> str:
    return f"{layer_name(params.prompt, params.seed if params.seed >= 0 else 0).rsplit(' #', 1)[0]} ×{params.batch}"


def remember(doc: CanvasDocument, layer_id: str, params: JobParams, item: Result) -> None:
    layer_params.remember(doc, layer_id, params, item.seed, item.info.index)


def recall(doc: CanvasDocument, layer_id: str) -> Optional[Tuple[JobParams, int]]:
    return layer_params.recall(doc, layer_id)


def settings_from(params: JobParams, seed: int) -> Dict[str, Any]:
    """The settings that reproduce a stored layer (its own seed, fixed)."""
    return {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "model": params.model or "",
        "strength": params.strength,
        "steps": params.steps,
        "cfg_scale": params.cfg_scale,
        "sampler": params.sampler,
        "seed": seed,
    }
