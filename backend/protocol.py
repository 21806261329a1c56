"""The v1 request contract between the Krita plugin and the backend.

One source of truth for the HTTP API: every request body, response body and event payload is a
model here. ``docs/protocol.md`` documents it and ``plugin/diffusion_layers/protocol.py`` mirrors
it with standard-library dataclasses; both sides test a JSON round trip of the same fixtures
(``tests/fixtures/protocol/``).

Images travel as multipart parts next to the ``params`` JSON part. A part's Content-Type picks
its codec: an image file (``image/png``, ``image/jpeg``, ``image/webp``, or
``application/octet-stream``, told apart by its first bytes) or the raw formats below, which skip
encoding entirely and are the fast path on loopback. The region is ``params.width`` x
``params.height``; both may be left out when the ``image`` part is a file, which carries its size.
Image and mask parts are exactly the region's size; control images of another size are scaled
to cover the region (docs/protocol.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

#: Raw 8-bit BGRA, straight (not premultiplied) alpha, rows top to bottom: Krita's own layout.
RAW_BGRA = "image/x-raw-bgra8"
#: Raw 8-bit single channel (masks): 255 = fully selected.
RAW_GRAY = "image/x-raw-gray8"
PNG = "image/png"
JPEG = "image/jpeg"
WEBP = "image/webp"

Mode = Literal["txt2img", "img2img", "inpaint", "outpaint", "upscale", "edit", "layers"]
ControlType = Literal[
    "scribble",
    "lineart",
    "softedge",
    "canny",
    "depth",
    "normal",
    "pose",
    "tile",
    "reference",
    "style",
    "composition",
    "face",
]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
Fill = Literal["auto", "neutral", "blur", "border"]

MODES: tuple[str, ...] = (
    "txt2img",
    "img2img",
    "inpaint",
    "outpaint",
    "upscale",
    "edit",
    "layers",
)
CONTROL_TYPES: tuple[str, ...] = (
    "scribble",
    "lineart",
    "softedge",
    "canny",
    "depth",
    "normal",
    "pose",
    "tile",
    "reference",
    "style",
    "composition",
    "face",
)
#: Reference images (IP-Adapter): the picture guides content, style, layout or a face.
REFERENCE_TYPES: tuple[str, ...] = ("reference", "style", "composition", "face")
JOB_STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")

MAX_PROMPT_CHARS = 8000
MAX_BATCH = 8
MAX_CONTROLS = 8
MAX_LORAS = 8
MAX_SIDE = 8192
MAX_SEED = 2**32 - 1


VAE_DESCRIPTION = "VAE name from /v1/models; null = the model's default VAE"
STYLE_DESCRIPTION = (
    "style name from /v1/styles: fills every field the request leaves out (docs/protocol.md)"
)


SIZE_DESCRIPTION = (
    "size of the region; null = the image part's own size (a PNG/JPEG/WebP file); "
    "required for txt2img and raw image parts"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ControlParams(_Model):
    """One control layer. ``image`` names the multipart part that holds its pixels."""

    type: ControlType
    image: str = Field(pattern=r"^control_[0-9]{1,2}$", description="multipart part name")
    model: str | None = Field(
        default=None,
        max_length=200,
        description="ControlNet name (IP-Adapter name for reference types); None picks one by type",
    )
    strength: float = Field(default=1.0, ge=0.0, le=2.0, description="weight")
    start: float = Field(default=0.0, ge=0.0, le=1.0)
    end: float = Field(default=1.0, ge=0.0, le=1.0)
    preprocess: bool = Field(
        default=True, description="run the type's preprocessor; False = the image is a ready map"
    )


class LoraParams(_Model):
    name: str = Field(min_length=1, max_length=200)
    weight: float = Field(default=1.0, ge=-4.0, le=4.0)


class InpaintOptions(_Model):
    """Fine control over inpainting; None means 'chosen from the selection size'."""

    context: float | None = Field(
        default=None, ge=0.0, le=4.0, description="context around the selection, x its size"
    )
    grow: int | None = Field(default=None, ge=0, le=512, description="denoise-mask grow, px")
    blur: int | None = Field(default=None, ge=0, le=512, description="denoise-mask blur, px")
    feather: int | None = Field(default=None, ge=0, le=512, description="composite feather, px")
    color_match: bool = True
    fill: Fill = "auto"


MAX_UPSCALE = 4.0


class UpscaleParams(_Model):
    """``mode: "upscale"``: scale the image, optionally refine it tile by tile (docs/upscale.md).

    The result is ``round(width * factor)`` x ``round(height * factor)`` at x=y=0. With a
    ``mask`` part the factor must be 1 (refine in place; result alpha = the selection)."""

    factor: float = Field(default=2.0, ge=1.0, le=MAX_UPSCALE, description="1.0..4.0")
    model: str | None = Field(
        default=None,
        max_length=200,
        description='upscaler name from /v1/models "upscalers"; null = Lanczos resampling',
    )
    refine: bool = Field(
        default=False,
        description="tiled diffusion refine after scaling, at `strength`, with the prompt",
    )
    tile_size: int | None = Field(
        default=None, ge=256, le=2048, description="px; null = the checkpoint's native size"
    )
    tile_overlap: int | None = Field(default=None, ge=0, le=512, description="px; null = auto")


MIN_LAYERS, MAX_LAYERS = 2, 8
LAYERS_DESCRIPTION = (
    'mode "layers": how many RGBA layers to split the image into (null = the model\'s default; '
    "within its capabilities.layers min..max); any other mode: leave it out"
)

HIRES_DESCRIPTION = (
    "two-pass high-resolution generation for regions much larger than the native size: "
    "null = the server's setting (default on), false = off for this job"
)


class JobParams(_Model):
    """The ``params`` part of ``POST /v1/jobs``."""

    protocol: int = Field(default=PROTOCOL_VERSION, ge=1, le=PROTOCOL_VERSION)
    mode: Mode
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, max_length=200)
    vae: str | None = Field(default=None, max_length=200, description=VAE_DESCRIPTION)
    width: int | None = Field(default=None, ge=8, le=MAX_SIDE, description=SIZE_DESCRIPTION)
    height: int | None = Field(default=None, ge=8, le=MAX_SIDE, description=SIZE_DESCRIPTION)
    x: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="region's canvas offset")
    y: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    strength: float = Field(default=1.0, ge=0.0, le=1.0)
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=0.0, le=30.0)
    sampler: str = Field(default="dpmpp_2m_karras", max_length=40)
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1 = random")
    batch: int = Field(default=1, ge=1, le=MAX_BATCH)
    clip_skip: int = Field(default=1, ge=1, le=4)
    controls: list[ControlParams] = Field(default_factory=list, max_length=MAX_CONTROLS)
    loras: list[LoraParams] = Field(default_factory=list, max_length=MAX_LORAS)
    inpaint: InpaintOptions = Field(default_factory=InpaintOptions)
    upscale: UpscaleParams = Field(default_factory=UpscaleParams)
    hires: bool | None = Field(default=None, description=HIRES_DESCRIPTION)
    style: str | None = Field(default=None, max_length=80, description=STYLE_DESCRIPTION)
    layers: int | None = Field(
        default=None, ge=MIN_LAYERS, le=MAX_LAYERS, description=LAYERS_DESCRIPTION
    )


class ErrorInfo(_Model):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(_Model):
    error: ErrorInfo


class JobCreated(_Model):
    id: str
    state: JobState = "queued"
    queue_position: int = 0


class ResultInfo(_Model):
    """One finished layer. ``x``/``y`` are its offset inside the request's region."""

    index: int
    seed: int
    x: int
    y: int
    width: int
    height: int
    url: str
    raw_url: str
    file: str | None = None
    group: str | None = Field(
        default=None, description='mode "layers": the job id (its layers form one group); else null'
    )
    layer_index: int | None = Field(
        default=None, description='mode "layers": stacking position, 0 = bottom; else null'
    )
    composite_error: float | None = Field(
        default=None,
        description='mode "layers": mean absolute difference (0..255) between the alpha-'
        "composite of the job's layers and the model's own composite; else null",
    )


class JobInfo(_Model):
    id: str
    state: JobState
    mode: Mode
    step: int = 0
    total_steps: int = 0
    queue_position: int | None = None
    error: ErrorInfo | None = None
    results: list[ResultInfo] = Field(default_factory=list)
    preview_url: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class Health(_Model):
    status: Literal["ok", "loading", "error"]
    ready: bool
    version: str
    protocol: int = PROTOCOL_VERSION
    device: str
    dtype: str
    model: str | None = None
    queue_length: int = 0
    capabilities: list[str] = Field(default_factory=list)
    error: str | None = None
    offload: str | None = Field(
        default=None,
        description="memory policy of the loaded model: none (all on the device), model or "
        "sequential (CPU offload chosen from free VRAM); null = no model loaded",
    )


class PreprocessParams(_Model):
    """The ``params`` part of ``POST /v1/preprocess`` (control map for 'preprocess to layer')."""

    type: ControlType
    width: int | None = Field(default=None, ge=8, le=MAX_SIDE, description=SIZE_DESCRIPTION)
    height: int | None = Field(default=None, ge=8, le=MAX_SIDE, description=SIZE_DESCRIPTION)


class ProgressEvent(_Model):
    """SSE ``progress`` event data."""

    id: str
    step: int
    total_steps: int
    preview_url: str | None = None


# --- Live painting (additive) ---------------------------------------------------------------

#: A live session id: the plugin sends its document id (letters, digits, ``-`` and ``_``).
LIVE_SESSION_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class LiveParams(_Model):
    """The ``params`` part of ``POST /v1/live/{session}/frames``: one img2img frame.

    ``sampler``/``steps``/``cfg_scale`` left out (null) are chosen from the model and its LoRAs
    (LCM/TCD/Turbo/Lightning/Hyper presets, see docs/live.md). ``seed`` -1 means the session's
    seed: picked once when the session starts and kept for every frame, so the picture stays
    stable while the artist paints.
    """

    protocol: int = Field(default=PROTOCOL_VERSION, ge=1, le=PROTOCOL_VERSION)
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, max_length=200)
    vae: str | None = Field(default=None, max_length=200, description=VAE_DESCRIPTION)
    width: int | None = Field(default=None, ge=8, le=MAX_SIDE, description=SIZE_DESCRIPTION)
    height: int | None = Field(default=None, ge=8, le=MAX_SIDE, description=SIZE_DESCRIPTION)
    x: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="region's canvas offset")
    y: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    strength: float = Field(default=0.6, gt=0.0, le=1.0)
    steps: int | None = Field(default=None, ge=1, le=50, description="null = the preset's")
    cfg_scale: float | None = Field(default=None, ge=0.0, le=30.0, description="null = preset")
    sampler: str | None = Field(default=None, max_length=40, description="null = preset")
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1 = the session's seed")
    clip_skip: int = Field(default=1, ge=1, le=4)
    controls: list[ControlParams] = Field(default_factory=list, max_length=MAX_CONTROLS)
    loras: list[LoraParams] = Field(default_factory=list, max_length=MAX_LORAS)
    record: bool = Field(
        default=False, description="also save the frame as PNG under <output_dir>/live/<session>/"
    )
    style: str | None = Field(default=None, max_length=80, description=STYLE_DESCRIPTION)
    edit: bool = Field(
        default=False,
        description='run the frame as mode "edit": the prompt is an instruction, reference '
        "controls (no model) are its reference images; only on checkpoints whose "
        "capabilities.edit.live is true",
    )


class LiveSessionInfo(_Model):
    """``GET``/``DELETE /v1/live/{session}``: what a live session did."""

    session: str
    seed: int | None = None
    frames: int = Field(default=0, description="frames rendered")
    superseded: int = Field(default=0, description="frames dropped for a newer one")
    failed: int = 0
    last_ms: float | None = Field(default=None, description="render time of the last frame")
    record_dir: str | None = None


# --- Styles (additive) -----------------------------------------------------------------------

#: A style's name: 1..80 letters, digits, spaces, ``_ . -``; stored as <styles_dir>/<name>.json.
STYLE_NAME_PATTERN = r"^[A-Za-z0-9_. -]{1,80}$"
PREDICTIONS: tuple[str, ...] = ("epsilon", "v_prediction")


class Style(_Model):
    """A reusable setup (``GET/PUT/DELETE /v1/styles``). Null fields leave the setting to the
    request or the default; ``prompt`` is a template where ``{prompt}`` is the artist's text."""

    name: str = Field(min_length=1, max_length=80, pattern=STYLE_NAME_PATTERN)
    checkpoints: list[str] = Field(
        default_factory=list, max_length=16, description="ordered fallbacks: first installed wins"
    )
    loras: list[LoraParams] = Field(default_factory=list, max_length=MAX_LORAS)
    prompt: str = Field(default="{prompt}", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    sampler: str | None = Field(default=None, max_length=40)
    steps: int | None = Field(default=None, ge=1, le=150)
    cfg_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    clip_skip: int | None = Field(default=None, ge=1, le=4)
    vae: str | None = Field(default=None, max_length=200)
    prediction: Literal["epsilon", "v_prediction"] | None = None
    live_sampler: str | None = Field(default=None, max_length=40)
    live_steps: int | None = Field(default=None, ge=1, le=50)
    resolution: int | None = Field(
        default=None, ge=64, le=4096, description="preferred native side (px) to denoise at"
    )
    builtin: bool = Field(default=False, description="the server's own; read-only")


class StylesList(_Model):
    styles: list[Style] = Field(default_factory=list)
