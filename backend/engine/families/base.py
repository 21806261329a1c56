"""The typed description of a model family (SD1.5, SDXL, ...): everything the engine knows
about one family, so that no code outside ``backend/engine/families/`` branches on its name.

A family module builds one ``Family`` value; ``families/__init__.py`` lists them in detection
order. Detection reads tensor names and shapes (a safetensors/GGUF header) or a diffusers
config, never file names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the call types are only named here
    from backend.engine.types import DecomposeCall, Decomposition, EditCall

#: tensor name -> shape, as read from a safetensors/GGUF header (no tensor data)
Header = Mapping[str, tuple[int, ...]]
#: the modes a request can ask for (protocol.Mode)
ALL_MODES = ("txt2img", "img2img", "inpaint", "outpaint", "upscale", "edit", "layers")
#: the diffusers tasks a pipeline map has entries for
TASKS = ("txt2img", "img2img", "inpaint")


@dataclass(frozen=True)
class Defaults:
    """What a job of this family runs with when the request leaves a field unset."""

    sampler: str = "dpmpp_2m_karras"
    steps: int = 20
    cfg_scale: float = 7.0
    guidance: float | None = None  # distilled guidance (Flux); None: the family has none


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of the family's pipeline: its diffusers component and tokenizer names
    and the tokenizer's padding token ("endoftext" for CLIP-L, "bang" for OpenCLIP-bigG)."""

    component: str  # "text_encoder" | "text_encoder_2" | ...
    tokenizer: str  # "tokenizer" | "tokenizer_2" | ...
    pad: str = "endoftext"
    pooled: bool = False  # its pooled output conditions the denoiser (SDXL's second)


@dataclass(frozen=True)
class LatentPreview:
    """Latent -> RGB least-squares factors for step previews (no VAE decode)."""

    factors: tuple[tuple[float, float, float], ...]  # one RGB row per latent channel
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def channels(self) -> int:
        return len(self.factors)


@dataclass(frozen=True)
class LoraSpec:
    """How LoRAs of this family are told apart and loaded."""

    #: kohya ``ss_base_model_version`` prefixes naming this family (lower case)
    metadata_versions: tuple[str, ...] = ()
    #: ``modelspec.architecture`` prefixes naming this family (lower case)
    metadata_architectures: tuple[str, ...] = ()
    #: width of the text embedding the cross-attention keys take (768 SD1.5, 2048 SDXL)
    text_width: int | None = None
    #: the last resort when nothing else tells: key prefixes that suggest this family
    fallback_prefixes: tuple[str, ...] = ()
    #: whether a LoRA in the bare dotted layout (``[diffusion_model.|transformer.]transformer_
    #: blocks.0.attn.to_q.lora_down/.lora_up/.alpha``) with these keys loads (lora.dotted_to_peft
    #: or the family's diffusers loader converts it); False: refused at submit (lora_formats)
    dotted: Callable[[Header], bool] = field(default=lambda keys: False)


@dataclass(frozen=True)
class MemoryPolicy:
    """What the model manager may do to fit the family in VRAM (per-family hooks).

    ``offload`` chooses from free VRAM in bytes: "none", "model" or "sequential"."""

    approx_bytes_fp16: int = 0  # the full model's size in fp16 (for the VRAM choice)
    offload: Callable[[int], str] = field(default=lambda free: "none")


@dataclass(frozen=True)
class TinySpec:
    """The family's tiny test configuration (built in code; see ``backend/engine/tiny.py``):
    the built-in names and how they are made."""

    checkpoints: Mapping[str, bool] = field(default_factory=dict)  # name -> inpaint
    controlnets: tuple[str, ...] = ()
    loras: tuple[str, ...] = ()
    #: component name -> tiny config overrides applied on the shared SD base configs
    unet: Mapping[str, Any] = field(default_factory=dict)
    vae: Mapping[str, Any] = field(default_factory=dict)
    #: ControlNet files in the original (``control_model.*``) layout, else diffusers layout
    ldm_controlnet: bool = True


@dataclass(frozen=True)
class EditSpec:
    """Instruction editing (mode "edit", docs/engine.md "Edit").

    ``run(pipe, call)`` gets the checkpoint's base pipeline and an ``EditCall`` and returns
    one (H, W, 3) uint8 RGB image per seed of ``call.seeds`` at ``call.width`` x
    ``call.height``; it calls ``call.on_step`` every denoising step (cancel raises from it)."""

    max_references: int  # reference images besides the input image (0 = none)
    run: Callable[[Any, EditCall], list[np.ndarray]]
    live: bool = False  # fast enough for live painting (distilled, few steps)

    def __post_init__(self) -> None:
        if self.max_references < 0:
            raise ValueError(f"max_references={self.max_references}: 0 or more")


@dataclass(frozen=True)
class DecomposeSpec:
    """Decomposition into RGBA layers (mode "layers", docs/engine.md "Layers").

    ``run(pipe, call)`` gets the checkpoint's base pipeline and a ``DecomposeCall`` and
    returns a ``Decomposition``: ``call.layers`` (H, W, 4) uint8 RGBA layers, bottom first,
    and the pipeline's own (H, W, 3) composite. ``run`` comes first (the others have
    defaults); pass every field by keyword."""

    run: Callable[[Any, DecomposeCall], Decomposition]
    min_layers: int = 2
    max_layers: int = 8
    default_layers: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.min_layers <= self.default_layers <= self.max_layers:
            raise ValueError(
                f"min_layers={self.min_layers}, default_layers={self.default_layers}, "
                f"max_layers={self.max_layers}: need 1 <= min <= default <= max"
            )


@dataclass(frozen=True)
class Family:
    """One model family. Fields are data; the few callables are pure header checks."""

    id: str  # stable identifier in the API ("sd15", "sdxl", ...)
    label: str  # how artists name it ("SD1.5")
    native_size: int  # the side of the square it was trained at (px)
    size_multiple: int  # denoise sides are multiples of this (px)
    #: shipped full-size configs under backend/engine/configs/: base, inpaint, ControlNet
    config_folder: str
    inpaint_config_folder: str | None
    controlnet_config_folder: str | None
    base_pipeline: str  # the diffusers class a checkpoint loads as
    #: (task, with ControlNet) -> diffusers pipeline class; a missing pair is not offered
    pipelines: Mapping[tuple[str, bool], str]
    text_encoders: tuple[TextEncoder, ...]
    preview: LatentPreview
    defaults: Defaults
    lora: LoraSpec
    tiny: TinySpec
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    #: extra keyword arguments for ``from_single_file``/``from_pretrained``/model_index.json
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)
    index_extra: Mapping[str, Any] = field(default_factory=dict)
    #: keyword arguments the base pipeline's constructor takes besides its components (the
    #: tiny and benchmark builders assemble pipelines from parts)
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dedicated_inpaint: bool = True  # 9-channel inpaint checkpoints exist and load
    negative_prompt: bool = True  # the docker shows the negative prompt
    cfg: bool = True  # the docker shows CFG (False for guidance-distilled models)
    live: bool = True
    #: strength of the tiled refine pass of high-resolution generation (hires.py): enough to
    #: add detail at full size without redrawing the first pass's composition
    hires_strength: float = 0.35
    #: pickles (.ckpt/.pth/.bin) cannot be inspected without loading: a pickle whose name holds
    #: one of these (lower case) is taken as this family; ``legacy_pickles``: the family of
    #: pickles nothing else names (old ControlNets and checkpoints were all SD1.5)
    pickle_name_hints: tuple[str, ...] = ()
    legacy_pickles: bool = False
    force_zeros_for_empty_prompt: bool = False  # empty negative = zeros (SDXL)
    default_vae_file: str | None = None  # the VAE usually paired (what to suggest installing)
    vae_scaling_factor: float = 0.18215
    controlnet_hint: str = "a {type} ControlNet"  # install suggestion
    #: header tests: a checkpoint (LDM layout), a diffusers UNet config, a ControlNet header
    matches_checkpoint: Callable[[Header], bool] = field(default=lambda keys: False)
    matches_unet_config: Callable[[Mapping[str, Any]], bool] = field(default=lambda c: False)
    matches_controlnet: Callable[[Header], bool] = field(default=lambda keys: False)
    matches_controlnet_config: Callable[[Mapping[str, Any]], bool] = field(default=lambda c: False)
    matches_lora: Callable[[Header], bool] = field(default=lambda keys: False)
    #: Optional hooks for families that do not load or encode like SD (a transformer with
    #: separate text encoder files, e.g. Flux): ``load(source, *, device, dtype, name,
    #: allow_pickle, vae) -> LoadedModel`` replaces the shared single-file SD loader, and
    #: ``encode(pipe, prompt, negative_prompt, **options) -> PromptEmbeds`` replaces the CLIP
    #: prompt encoder. None: the shared SD path (loader.py, prompts.py).
    load: Callable[..., Any] | None = None
    encode: Callable[..., Any] | None = None
    #: families with a ``load`` hook (no LDM UNet to read): whether a header / a diffusers
    #: transformer config is a dedicated inpaint model (FLUX.1 Fill)
    inpaint_header: Callable[[Header], bool] = field(default=lambda keys: False)
    inpaint_config: Callable[[Mapping[str, Any]], bool] = field(default=lambda c: False)
    #: ControlNets of transformer families (Flux, Z-Image): the diffusers model class, the
    #: class that runs several at once (None: one control at a time), the config read off a
    #: header when the file embeds none, and Union models' control mode per control type
    controlnet_class: str = "ControlNetModel"
    multi_controlnet_class: str | None = "MultiControlNetModel"
    controlnet_config: Callable[[Header], dict[str, Any]] | None = None
    controlnet_modes: Mapping[str, int] = field(default_factory=dict)
    #: families whose LoRAs and ControlNets work on this one (FLUX.1 schnell takes FLUX.1's)
    shares_addons_of: tuple[str, ...] = ()
    #: the pipeline call's keyword for CFG ("true_cfg_scale" where ``guidance_scale`` means
    #: distilled guidance or is ignored, as in Qwen-Image's pipelines)
    cfg_argument: str = "guidance_scale"
    #: checkpoints whose tensors equal this family's but whose abilities differ (Qwen-Image
    #: and Qwen-Image-Edit): safetensors metadata -> the family id it names (None: this one).
    #: Diffusers folders are told apart by ``matches_unet_config``, which sees the transformer
    #: config with model_index.json's class name as ``_pipeline_class_name``
    from_metadata: Callable[[Mapping[str, str]], str | None] | None = None
    #: pipeline classes of our own for tasks diffusers has no class for (FLUX.2 klein
    #: img2img): () -> {name: class}, consulted before ``diffusers`` by ``pipeline_type``
    pipeline_classes: Callable[[], Mapping[str, type]] | None = None
    #: built-in styles (GET /v1/styles, backend/styles.py): Style fields without ``builtin``
    #: and ``checkpoints`` (the family's installed ones); listed as "<label> <name>" while a
    #: checkpoint of the family is installed
    styles: tuple[Mapping[str, Any], ...] = ()
    #: instruction editing (mode "edit") and decomposition into layers (mode "layers");
    #: None: the family cannot. A family with only ``decompose`` may have empty ``pipelines``.
    edit: EditSpec | None = None
    decompose: DecomposeSpec | None = None

    def __post_init__(self) -> None:
        if self.native_size <= 0 or self.native_size % 8:
            raise ValueError(f"native_size={self.native_size}: a positive multiple of 8")
        if self.size_multiple <= 0 or self.size_multiple % 8:
            raise ValueError(f"size_multiple={self.size_multiple}: a positive multiple of 8")
        for task, _ in self.pipelines:
            if task not in TASKS:
                raise ValueError(f"pipelines: task {task!r} is not one of {TASKS}")

    def pipeline(self, task: str, controlnet: bool) -> str:
        """The diffusers class for ``task`` (with ControlNet or not); KeyError when absent."""
        return self.pipelines[(task, controlnet)]

    def pipeline_type(self, name: str) -> type:
        """The class named ``name``: the family's own (``pipeline_classes``) or diffusers';
        AttributeError when neither has it."""
        own = self.pipeline_classes() if self.pipeline_classes is not None else {}
        if name in own:
            return own[name]
        import diffusers

        return getattr(diffusers, name)

    @property
    def controlnet(self) -> bool:
        return any(with_control for _, with_control in self.pipelines)

    @property
    def pooled(self) -> bool:
        """Whether a text encoder's pooled output conditions the denoiser."""
        return any(encoder.pooled for encoder in self.text_encoders)

    def modes(self) -> tuple[str, ...]:
        """The request modes this family runs (inpaint/outpaint need an inpaint pipeline;
        upscale refines through img2img; edit needs ``edit``, layers ``decompose``)."""
        tasks = {task for task, _ in self.pipelines}
        wanted = {
            "txt2img": "txt2img" in tasks,
            "img2img": "img2img" in tasks,
            "inpaint": "inpaint" in tasks,
            "outpaint": "inpaint" in tasks,
            "upscale": "img2img" in tasks,
            "edit": self.edit is not None,
            "layers": self.decompose is not None,
        }
        return tuple(mode for mode in ALL_MODES if wanted[mode])

    def capabilities(self) -> dict[str, Any]:
        """The per-checkpoint ``capabilities`` of GET /v1/models (docs/protocol.md)."""
        return {
            "modes": list(self.modes()),
            "negative_prompt": self.negative_prompt,
            "cfg": self.cfg,
            "controlnet": self.controlnet,
            "loras": True,
            "live": self.live,
            "native_size": self.native_size,
            "size_multiple": self.size_multiple,
            "defaults": {
                "sampler": self.defaults.sampler,
                "steps": self.defaults.steps,
                "cfg_scale": self.defaults.cfg_scale,
                "guidance": self.defaults.guidance,
            },
            "edit": (
                None
                if self.edit is None
                else {"max_references": self.edit.max_references, "live": self.edit.live}
            ),
            "layers": (
                None
                if self.decompose is None
                else {
                    "min": self.decompose.min_layers,
                    "max": self.decompose.max_layers,
                    "default": self.decompose.default_layers,
                }
            ),
        }
