"""Per-layer generation parameters stored in the document (saved in the .kra).

One document annotation of type ``diffusion_layers`` holds a JSON object mapping each applied
layer's uniqueId (``QUuid.toString()``, e.g. ``{1b4e...}``) to ``{"params": JobParams dict,
"seed": the result's seed, "index": its batch index}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Optional, Tuple

from .canvas import CanvasDocument
from .protocol import JobParams, ProtocolError

log = logging.getLogger(__name__)

ANNOTATION_TYPE = "diffusion_layers"
ANNOTATION_DESCRIPTION = "Diffusion Layers generation parameters per layer"


def read_all(doc: CanvasDocument) -> Dict[str, Any]:
    raw = doc.read_annotation(ANNOTATION_TYPE)
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        log.warning("annotation %s is not JSON; starting a new one", ANNOTATION_TYPE)
        return {}
    return data if isinstance(data, dict) else {}


def remember(doc: CanvasDocument, layer_id: str, params: JobParams, seed: int, index: int) -> None:
    data = read_all(doc)
    data[layer_id] = {"params": params.to_dict(), "seed": seed, "index": index}
    blob = json.dumps(data, separators=(",", ":")).encode("utf-8")
    doc.write_annotation(ANNOTATION_TYPE, ANNOTATION_DESCRIPTION, blob)


def recall(doc: CanvasDocument, layer_id: str) -> Optional[Tuple[JobParams, int]]:
    """The params and seed that made a layer, or None for layers the plugin did not make."""
    entry = read_all(doc).get(layer_id)
    if not isinstance(entry, dict):
        return None
    try:
        return JobParams.from_dict(entry["params"]), int(entry["seed"])
    except (KeyError, ValueError, TypeError, ProtocolError) as exc:
        log.warning("parameters of layer %s unreadable: %s", layer_id, exc)
        return None
