"""The answer of ``GET /v1/models``: what the server can run, per checkpoint (capabilities),
and the add-ons it lists (ControlNets, LoRAs, VAEs, IP-Adapters, upscalers, unusable files).

Part of the v1 contract (docs/protocol.md); split from ``backend/protocol.py``, whose
constants and base model it uses.
"""

from __future__ import annotations

from pydantic import Field

from backend.protocol import CONTROL_TYPES, MAX_LAYERS, MIN_LAYERS, MODES, _Model


class FamilyDefaults(_Model):
    """What a job on the checkpoint runs with when the request leaves a field unset."""

    sampler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    guidance: float | None = Field(default=None, description="distilled guidance; null = none")


class EditCapability(_Model):
    """What a checkpoint that edits by instruction takes."""

    max_references: int = Field(default=0, description="reference images besides the image")
    live: bool = Field(default=False, description="fast enough for live painting")


class LayersCapability(_Model):
    """How many layers a decomposing checkpoint splits a picture into."""

    min: int = MIN_LAYERS
    max: int = MAX_LAYERS
    default: int = 4


class CheckpointCapabilities(_Model):
    """What a checkpoint's family supports: the docker hides the negative prompt and CFG when
    false and greys out the modes not listed. Absent (older servers): everything."""

    modes: list[str] = Field(default_factory=lambda: list(MODES), description="of Mode")
    negative_prompt: bool = True
    cfg: bool = True
    controlnet: bool = True
    loras: bool = True
    live: bool = True
    native_size: int | None = Field(default=None, description="side of the trained square, px")
    size_multiple: int = 8
    defaults: FamilyDefaults = Field(default_factory=FamilyDefaults)
    edit: EditCapability | None = Field(
        default=None, description='mode "edit" (instruction editing); null = cannot'
    )
    layers: LayersCapability | None = Field(
        default=None, description='mode "layers" (decompose into layers); null = cannot'
    )


class CheckpointInfo(_Model):
    name: str
    family: str
    inpaint: bool
    has_vae: bool = Field(default=True, description="false: runs with a VAE from vae/")
    capabilities: CheckpointCapabilities | None = None


class UnusableModel(_Model):
    """A file in the models folder that cannot be used, and why (naming it in a job is a 422)."""

    kind: str = Field(description="checkpoints | controlnet | lora | vae: the models sub-folder")
    name: str
    problem: str


class ControlNetInfo(_Model):
    name: str
    family: str
    type: str


class LoraInfo(_Model):
    name: str
    family: str | None = None
    format: str = Field(default="lora", description="lora | locon | diffusers | loha | lokr | ...")
    problem: str | None = Field(default=None, description="why it cannot be used; null = usable")


class VaeInfo(_Model):
    name: str
    family: str | None = None
    problem: str | None = Field(default=None, description="why it cannot be used; null = usable")


class IPAdapterInfo(_Model):
    """An IP-Adapter in ``models/ipadapter/`` (reference controls)."""

    name: str
    family: str | None = None
    type: str = Field(
        default="reference",
        description="reference (serves reference, style, composition) | face",
    )
    image_encoder: str | None = Field(
        default=None, description="the models/clip_vision/ encoder it runs with"
    )
    problem: str | None = Field(default=None, description="why it cannot be used; null = usable")


class UpscalerInfo(_Model):
    """A super-resolution model in ``models/upscale/`` (architecture and scale by spandrel)."""

    name: str = Field(description="file name, e.g. 4x-UltraSharp.pth")
    scale: int = Field(default=4, description="the model's own factor; 0 when it cannot be used")
    architecture: str | None = Field(
        default=None, description="ESRGAN, SwinIR, HAT, ... as spandrel names it"
    )
    problem: str | None = Field(default=None, description="why it cannot be used; null = usable")


class ModelsInfo(_Model):
    default: str | None = None
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)
    controlnets: list[ControlNetInfo] = Field(default_factory=list)
    loras: list[LoraInfo] = Field(default_factory=list)
    vaes: list[VaeInfo] = Field(default_factory=list)
    samplers: list[str] = Field(default_factory=list)
    control_types: list[str] = Field(default_factory=lambda: list(CONTROL_TYPES))
    preprocessors: list[str] = Field(default_factory=list)
    ipadapters: list[IPAdapterInfo] = Field(default_factory=list)
    upscalers: list[UpscalerInfo] = Field(default_factory=list)
    unusable: list[UnusableModel] = Field(default_factory=list)
