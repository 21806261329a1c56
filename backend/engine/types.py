"""Plain data the engine takes and returns. No HTTP, no torch in these types.

Images are numpy arrays: RGBA ``uint8`` of shape (H, W, 4) with straight alpha; masks are
``uint8`` (H, W) with 255 = fully selected. The API layer converts to and from Krita's BGRA.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from backend.engine.errors import Cancelled

if TYPE_CHECKING:  # torch-free at run time: the options class is only named here
    from backend.engine.acceleration import AccelerationOptions


@dataclass
class ControlInput:
    type: str
    image: np.ndarray  # (H, W, 4) uint8 RGBA, same size as the request
    model: str | None = None
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = True


@dataclass
class LoraInput:
    name: str
    weight: float = 1.0
    # The request field an error about it names ("loras[0].name", "style", "prompt");
    # None = its place in the request's ``loras`` list.
    field: str | None = None


@dataclass
class InpaintSettings:
    context: float | None = None
    grow: int | None = None
    blur: int | None = None
    feather: int | None = None
    color_match: bool = True
    fill: str = "auto"


@dataclass
class UpscaleSettings:
    """``mode: "upscale"`` (docs/upscale.md): factor, model (None = Lanczos), refine pass."""

    factor: float = 2.0
    model: str | None = None  # an upscaler's name (Inventory.upscalers)
    refine: bool = False
    tile_size: int | None = None  # None = the checkpoint's native size
    tile_overlap: int | None = None  # None = automatic


@dataclass
class GenerationRequest:
    """One generation. ``seed`` is resolved (never -1): result ``i`` uses ``seed + i``."""

    mode: str  # txt2img | img2img | inpaint | outpaint | upscale | edit | layers
    width: int
    height: int
    prompt: str = ""
    negative_prompt: str = ""
    model: str | None = None  # None = the engine's default model
    vae: str | None = None  # None = the model's default VAE (its own, or model_vaes)
    image: np.ndarray | None = None  # (H, W, 4) uint8 RGBA
    mask: np.ndarray | None = None  # (H, W) uint8
    strength: float = 1.0
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "dpmpp_2m_karras"
    seed: int = 0
    batch: int = 1
    clip_skip: int = 1
    controls: list[ControlInput] = field(default_factory=list)
    loras: list[LoraInput] = field(default_factory=list)
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)
    upscale: UpscaleSettings = field(default_factory=UpscaleSettings)
    hires: bool | None = None  # two-pass high resolution; None = the engine's setting
    x: int = 0  # the region's offset on the canvas (metadata only)
    y: int = 0
    style: str | None = None  # the style it was resolved with (metadata only)
    resolved: dict = field(default_factory=dict)  # what the style decided (metadata only)
    prediction: str | None = None  # prediction type override (a style's): epsilon | v_prediction
    resolution: int | None = None  # preferred native side (px) instead of the model's
    layers: int | None = None  # mode "layers": how many (None = the family's default)


@dataclass
class EditCall:
    """What ``EditSpec.run`` gets (mode "edit"): the region at the family's size, already
    cropped and resized by the engine (backend/engine/edit.py)."""

    prompt: str  # the instruction (prompt syntax already resolved)
    negative_prompt: str
    image: np.ndarray  # (H, W, 3) uint8 RGB; H, W multiples of the family's size_multiple
    references: list[np.ndarray]  # each (h, w, 3) uint8 RGB, any size; <= max_references
    mask: np.ndarray | None  # (H, W) float32 0..1, 1 = may change; None = the whole image
    width: int  # == image width (px)
    height: int  # == image height (px)
    steps: int
    cfg_scale: float
    guidance: float | None
    seeds: list[int]  # one output per seed
    strength: float  # 1.0 normally; families may ignore it
    #: (step, total, latents or None): call it every step (cancel raises from it)
    on_step: Callable[[int, int, Any], None]


@dataclass
class DecomposeCall:
    """What ``DecomposeSpec.run`` gets (mode "layers", backend/engine/decompose.py)."""

    prompt: str  # an optional description ("" allowed)
    negative_prompt: str
    image: np.ndarray  # (H, W, 3) uint8 RGB (the source's alpha is applied afterwards)
    layers: int  # N, within the family's min_layers..max_layers
    width: int  # == image width (px)
    height: int  # == image height (px)
    steps: int
    cfg_scale: float
    seed: int
    on_step: Callable[[int, int, Any], None]  # as EditCall.on_step


@dataclass
class Decomposition:
    """What ``DecomposeSpec.run`` returns."""

    layers: list[np.ndarray]  # N (H, W, 4) uint8 RGBA, straight alpha, BOTTOM first
    composite: np.ndarray  # (H, W, 3) uint8 RGB: the pipeline's own composite


@dataclass
class ResultMetadata:
    """What made a layer; written as the ``parameters`` PNG text chunk SD tools read."""

    prompt: str
    negative_prompt: str
    seed: int
    model: str
    sampler: str
    steps: int
    cfg_scale: float
    strength: float
    mode: str
    width: int
    height: int
    clip_skip: int = 1
    loras: list[dict] = field(default_factory=list)
    controls: list[dict] = field(default_factory=list)
    # What the model was run as (prediction.py): "epsilon" | "v_prediction".
    prediction_type: str = "epsilon"
    zero_terminal_snr: bool = False
    style: str | None = None
    # Every resolved parameter: the style's choices, the prompt as typed, the wildcards chosen,
    # the emphasis weights (docs/protocol.md, "Result metadata").
    resolved: dict = field(default_factory=dict)
    # mode "layers" (decompose.py): this layer's stacking position (0 = bottom), how many the
    # job made, and the mean absolute difference (0..255) between the alpha-composite of
    # them all and the model's own composite. None for every other mode.
    layer_index: int | None = None
    layers: int | None = None
    composite_error: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Layer:
    """A finished result: RGBA pixels placed at (x, y) inside the request's region.

    Transparent wherever the artist's pixels must stay untouched (outside the selection).
    """

    image: np.ndarray  # (h, w, 4) uint8 RGBA
    x: int
    y: int
    seed: int
    metadata: ResultMetadata

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass
class Progress:
    step: int
    total: int
    preview: np.ndarray | None = None  # small (h, w, 3) uint8 RGB, cheap latent preview


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Set from any thread; the engine checks it every denoising step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class CheckpointEntry:
    name: str
    family: str  # a family id (backend/engine/families)
    inpaint: bool
    path: str  # file, diffusers folder, hub id or "builtin:tiny..."
    widths: tuple[int, int] | None = None  # UNet (first block channels, text width), if read
    has_vae: bool = True  # False: no VAE weights inside, a VAE from vae/ is needed


@dataclass
class ControlNetEntry:
    name: str
    family: str
    type: str  # a control type, or "any"
    path: str
    widths: tuple[int, int] | None = None  # (first block channels, text width), if read


@dataclass
class LoraEntry:
    name: str
    family: str | None
    path: str
    format: str = "lora"  # lora | locon | diffusers | loha | lokr | ... (lora_formats.py)
    text_width: int | None = None  # the UNet text width it was trained for, if read
    problem: str | None = None  # why it cannot be used (a sentence); None = usable


@dataclass
class VaeEntry:
    name: str
    family: str | None  # a family id (backend/engine/families)
    path: str
    problem: str | None = None  # why it cannot be used (a sentence); None = usable


@dataclass
class UpscalerEntry:
    """A super-resolution model in models/upscale/ (upscalers.py): name = file name."""

    name: str
    path: str
    scale: int  # 0 when it cannot be used
    architecture: str  # spandrel's name ("ESRGAN", "SPAN", ...)
    problem: str | None = None  # why it cannot be used (a sentence); None = usable


@dataclass
class ImageEncoderEntry:
    """A CLIP vision encoder in models/clip_vision/ (ipadapter_files.py): name = file name."""

    name: str
    path: str
    hidden: int = 0  # hidden-state width (what "plus" and face adapters read)
    projection: int = 0  # image-embedding width (what plain adapters read)
    problem: str | None = None


@dataclass
class IpAdapterEntry:
    """An IP-Adapter in models/ipadapter/ (reference controls): name = file name."""

    name: str
    path: str
    family: str | None  # a family id, None when nothing tells
    type: str = "reference"  # "reference" (reference/style/composition) | "face"
    projection: str = "plain"  # plain | plus | full (the image projection it carries)
    image_width: int | None = None  # the encoder width it reads (see ImageEncoderEntry)
    text_width: int | None = None  # the UNet's cross-attention width it was made for
    image_encoder: str | None = None  # the clip_vision encoder it runs with
    problem: str | None = None


@dataclass
class SkippedModel:
    """A file in the models folder that cannot be used, and why (a sentence): a request
    naming it is refused with that reason instead of "not installed"."""

    kind: str  # "checkpoints" | "controlnet" | "lora" | "vae"
    name: str
    reason: str


@dataclass
class Inventory:
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    controlnets: list[ControlNetEntry] = field(default_factory=list)
    loras: list[LoraEntry] = field(default_factory=list)
    vaes: list[VaeEntry] = field(default_factory=list)
    skipped: list[SkippedModel] = field(default_factory=list)
    upscalers: list[UpscalerEntry] = field(default_factory=list)
    ipadapters: list[IpAdapterEntry] = field(default_factory=list)
    image_encoders: list[ImageEncoderEntry] = field(default_factory=list)

    def skipped_reason(self, kind: str, name: object) -> str | None:
        """Why the file ``name`` of ``kind`` was left out of the lists, if it was."""
        return next((s.reason for s in self.skipped if (s.kind, s.name) == (kind, name)), None)


@dataclass
class EngineConfig:
    """What the engine needs from the server's settings (the engine never sees HTTP)."""

    models_dir: str | None = None  # holds checkpoints/ controlnet/ lora/ vae/ (and depth/)
    default_model: str | None = None  # name from the inventory, or "tiny"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto | float16 | bfloat16 | float32
    allow_pickle: bool = False  # .ckpt/.pt only when the user says so
    cache_models: int = 2  # checkpoints kept loaded (LRU) ...
    cache_budget_gb: float | None = None  # ... within this memory budget (None = device-based)
    tiny_dir: str | None = None  # where the built-in tiny models are written (None = a cache dir)
    model_vaes: dict[str, str] = field(default_factory=dict)  # checkpoint -> its default VAE
    # Speed-ups (backend/engine/acceleration.py). ``compile``: off | background | blocking, a
    # torch.compile'd UNet per size bucket (CUDA). ``acceleration``: every option at once; it
    # wins over ``compile``. None = the device's recommended eager speed-ups (none on the CPU).
    compile: str = "off"
    acceleration: AccelerationOptions | None = None
    # Two-pass high-resolution generation for regions much larger than the native size
    # (hires.py); a job's ``hires`` field wins.
    hires: bool = True


class EngineProtocol(Protocol):
    """The engine as the job queue, the CLI and the benchmark use it.

    ``generate`` is called from a single worker thread; everything else is safe to call from
    HTTP handlers (cheap, no GPU work) except ``preload`` and ``preprocess``.
    """

    device: str
    dtype: str

    @property
    def loaded_model(self) -> str | None: ...

    def inventory(self) -> Inventory: ...

    def samplers(self) -> list[str]: ...

    def preprocessors(self) -> list[str]: ...

    def check_request(self, request: GenerationRequest) -> None:
        """Cheap validation (ranges, sizes, names against the inventory). Raises InvalidRequest
        or ModelNotFound naming the parameter, before anything is queued."""
        ...

    def preload(self, model: str | None = None) -> None: ...

    def generate(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[Layer]: ...

    def preprocess(self, control_type: str, image: np.ndarray) -> np.ndarray:
        """The control map the given type's preprocessor makes, as (H, W, 4) uint8 RGBA."""
        ...
