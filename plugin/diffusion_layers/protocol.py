"""Standard-library mirror of backend/protocol.py (the v1 HTTP contract).

Every class has ``to_dict``/``to_json`` and ``from_dict``/``from_json``. Field names, defaults
and order follow the pydantic models exactly, so ``to_dict`` of a parsed fixture equals the
backend's ``model_dump``. Unknown keys in server responses are ignored (forward compatible).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar

PROTOCOL_VERSION = 1
RAW_BGRA = "image/x-raw-bgra8"
RAW_GRAY = "image/x-raw-gray8"
PNG = "image/png"

MODES = ("txt2img", "img2img", "inpaint", "outpaint", "upscale", "edit", "layers")
#: What a checkpoint without ``capabilities`` (an older server) can do: every mode but the
#: instruction edit and the decomposition, which need checkpoints that say so.
CLASSIC_MODES = MODES[:5]
MIN_LAYERS = 2
MAX_LAYERS = 8
CONTROL_NET_TYPES = ("scribble", "lineart", "softedge", "canny", "depth", "normal", "pose", "tile")
#: Reference images (IP-Adapter): the layer's picture guides content, style, layout or a face.
REFERENCE_TYPES = ("reference", "style", "composition", "face")
CONTROL_TYPES = CONTROL_NET_TYPES + REFERENCE_TYPES
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
MAX_BATCH = 8
MAX_CONTROLS = 8
MAX_LORAS = 8
MAX_SIDE = 8192
MAX_SEED = 2**32 - 1
MIN_UPSCALE_FACTOR = 1.0
MAX_UPSCALE_FACTOR = 4.0

T = TypeVar("T", bound="Message")


class ProtocolError(ValueError):
    """A server message that does not fit the v1 contract."""


class Message:
    """Base of every protocol dataclass: JSON conversion driven by the type hints."""

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls: Type[T], data: Any) -> T:
        if not isinstance(data, dict):
            raise ProtocolError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
        kwargs: Dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kwargs[f.name] = _load(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ProtocolError(f"{cls.__name__}: {exc}") from exc

    @classmethod
    def from_json(cls: Type[T], text: typing.Union[str, bytes]) -> T:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"{cls.__name__}: invalid JSON ({exc})") from exc
        return cls.from_dict(data)


def _dump(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _load(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint) if hasattr(typing, "get_origin") else None
    args = typing.get_args(hint) if hasattr(typing, "get_args") else ()
    if origin is typing.Union:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _load(inner[0] if inner else Any, value, where)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_load(item, v, where) for v in value]
    if isinstance(hint, type) and issubclass(hint, Message):
        return hint.from_dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ProtocolError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ProtocolError(f"{where}: expected int, got {value!r}")
    return value


@dataclass
class ControlParams(Message):
    type: str
    image: str
    model: Optional[str] = None
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = True


@dataclass
class LoraParams(Message):
    name: str
    weight: float = 1.0


@dataclass
class InpaintOptions(Message):
    context: Optional[float] = None
    grow: Optional[int] = None
    blur: Optional[int] = None
    feather: Optional[int] = None
    color_match: bool = True
    fill: str = "auto"


@dataclass
class UpscaleParams(Message):
    """``mode: "upscale"``: output = round(width * factor) x round(height * factor)."""

    factor: float = 2.0
    model: Optional[str] = None  # an upscaler from ModelsInfo.upscalers; None: Lanczos
    refine: bool = False  # tiled diffusion refine pass after scaling (img2img parameters)
    tile_size: Optional[int] = None  # None: the checkpoint's native size
    tile_overlap: Optional[int] = None  # None: automatic


@dataclass
class JobParams(Message):
    mode: str
    # None: the image part's own size (an image file); the plugin always sends both.
    width: Optional[int] = None
    height: Optional[int] = None
    protocol: int = PROTOCOL_VERSION
    prompt: str = ""
    negative_prompt: str = ""
    model: Optional[str] = None
    vae: Optional[str] = None
    x: int = 0
    y: int = 0
    strength: float = 1.0
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "dpmpp_2m_karras"
    seed: int = -1
    batch: int = 1
    clip_skip: int = 1
    controls: List[ControlParams] = field(default_factory=list)
    loras: List[LoraParams] = field(default_factory=list)
    inpaint: InpaintOptions = field(default_factory=InpaintOptions)
    style: Optional[str] = None
    upscale: UpscaleParams = field(default_factory=UpscaleParams)
    hires: Optional[bool] = None  # two-pass high-resolution generation; None: server setting
    # mode "layers": how many RGBA layers (MIN_LAYERS..MAX_LAYERS); None: the family default.
    layers: Optional[int] = None


@dataclass
class ErrorInfo(Message):
    code: str
    message: str
    field: Optional[str] = None


@dataclass
class ErrorResponse(Message):
    error: ErrorInfo


@dataclass
class JobCreated(Message):
    id: str
    state: str = "queued"
    queue_position: int = 0


@dataclass
class ResultInfo(Message):
    index: int
    seed: int
    x: int
    y: int
    width: int
    height: int
    url: str
    raw_url: str
    file: Optional[str] = None
    group: Optional[str] = None  # mode "layers": the job id its layers share; None otherwise
    layer_index: Optional[int] = None  # mode "layers": 0 = the bottom layer
    # mode "layers": mean absolute difference (0..255) between the alpha-composite of the
    # job's layers and the model's own composite; None otherwise
    composite_error: Optional[float] = None


@dataclass
class JobInfo(Message):
    id: str
    state: str
    mode: str
    created_at: float
    step: int = 0
    total_steps: int = 0
    queue_position: Optional[int] = None
    error: Optional[ErrorInfo] = None
    results: List[ResultInfo] = field(default_factory=list)
    preview_url: Optional[str] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None


@dataclass
class Health(Message):
    status: str
    ready: bool
    version: str
    device: str
    dtype: str
    protocol: int = PROTOCOL_VERSION
    model: Optional[str] = None
    queue_length: int = 0
    capabilities: List[str] = field(default_factory=list)
    error: Optional[str] = None
    offload: Optional[str] = None  # memory policy of the loaded model (none|model|sequential)


@dataclass
class CheckpointInfo(Message):
    name: str
    family: str
    inpaint: bool
    has_vae: bool = True
    capabilities: Optional[Dict[str, Any]] = None  # parsed by model_capabilities.py


@dataclass
class ControlNetInfo(Message):
    name: str
    family: str
    type: str


@dataclass
class LoraInfo(Message):
    name: str
    family: Optional[str] = None
    format: str = "lora"
    problem: Optional[str] = None


@dataclass
class VaeInfo(Message):
    name: str
    family: Optional[str] = None
    problem: Optional[str] = None


@dataclass
class UpscalerInfo(Message):
    name: str
    scale: int = 0  # the model's own factor; 0 when it cannot be used
    architecture: str = ""  # ESRGAN, SwinIR, HAT … as spandrel names it
    problem: Optional[str] = None  # why it cannot be used (e.g. a pickle without --allow-pickle)


@dataclass
class IPAdapterInfo(Message):
    name: str
    family: Optional[str] = None
    type: str = "reference"  # "reference" (serves reference, style, composition) or "face"
    image_encoder: Optional[str] = None
    problem: Optional[str] = None


@dataclass
class ModelsInfo(Message):
    default: Optional[str] = None
    checkpoints: List[CheckpointInfo] = field(default_factory=list)
    controlnets: List[ControlNetInfo] = field(default_factory=list)
    loras: List[LoraInfo] = field(default_factory=list)
    vaes: List[VaeInfo] = field(default_factory=list)
    samplers: List[str] = field(default_factory=list)
    control_types: List[str] = field(default_factory=lambda: list(CONTROL_TYPES))
    preprocessors: List[str] = field(default_factory=list)
    ipadapters: List[IPAdapterInfo] = field(default_factory=list)
    upscalers: List[UpscalerInfo] = field(default_factory=list)
    unusable: List[Dict[str, Any]] = field(default_factory=list)  # {kind, name, problem}


@dataclass
class PreprocessParams(Message):
    type: str
    width: Optional[int] = None
    height: Optional[int] = None


@dataclass
class ProgressEvent(Message):
    id: str
    step: int
    total_steps: int
    preview_url: Optional[str] = None


# --- Live painting (additive mirror of backend/protocol.py) ---------------------------------

LIVE_SESSION_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass
class LiveParams(Message):
    width: Optional[int] = None
    height: Optional[int] = None
    protocol: int = PROTOCOL_VERSION
    prompt: str = ""
    negative_prompt: str = ""
    model: Optional[str] = None
    vae: Optional[str] = None
    x: int = 0
    y: int = 0
    strength: float = 0.6
    steps: Optional[int] = None
    cfg_scale: Optional[float] = None
    sampler: Optional[str] = None
    seed: int = -1
    clip_skip: int = 1
    controls: List[ControlParams] = field(default_factory=list)
    loras: List[LoraParams] = field(default_factory=list)
    record: bool = False
    style: Optional[str] = None
    edit: bool = False  # the frame runs as mode "edit" (checkpoints with capabilities.edit.live)


@dataclass
class LiveSessionInfo(Message):
    session: str
    seed: Optional[int] = None
    frames: int = 0
    superseded: int = 0
    failed: int = 0
    last_ms: Optional[float] = None
    record_dir: Optional[str] = None


# --- Styles (GET/PUT/DELETE /v1/styles) -------------------------------------------------------

STYLE_NAME_PATTERN = r"^[A-Za-z0-9_. -]{1,80}$"


@dataclass
class Style(Message):
    """A reusable setup: checkpoint fallbacks, LoRAs, prompt template and settings (None: the
    style leaves that setting to the request or the default)."""

    name: str
    checkpoints: List[str] = field(default_factory=list)
    loras: List[LoraParams] = field(default_factory=list)
    prompt: str = "{prompt}"
    negative_prompt: str = ""
    sampler: Optional[str] = None
    steps: Optional[int] = None
    cfg_scale: Optional[float] = None
    clip_skip: Optional[int] = None
    vae: Optional[str] = None
    prediction: Optional[str] = None
    live_sampler: Optional[str] = None
    live_steps: Optional[int] = None
    resolution: Optional[int] = None
    builtin: bool = False


@dataclass
class StylesList(Message):
    styles: List[Style] = field(default_factory=list)
