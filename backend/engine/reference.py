"""Reference images (IP-Adapter): control types ``reference``, ``style``, ``composition``, ``face``.

Each reference control picks an IP-Adapter (``model``, or by family and type) and the CLIP
vision encoder it fits (ipadapter_files.py). For a job, every adapter is loaded into the UNet
through diffusers (``load_ip_adapter`` with the state dicts, one adapter per control, the same
file twice if two controls use it) and unloaded after it; the image embeddings are computed here
(the encoder's image embedding for plain adapters, its penultimate hidden states for plus/face
ones; zeros / a black image as the negative, as diffusers does) and given to the pipeline as
``ip_adapter_image_embeds``.

Weights and windows: before every denoising step each adapter's scale on each attention layer
is set to ``strength`` inside its ``start``..``end`` window (the ControlNet rule: step ``i`` of
``n`` runs when ``i/n >= start`` and ``(i+1)/n <= end``) and 0 outside. ``style`` and
``composition`` use InstantStyle's layer choice, found from the UNet's structure rather than
from names per family: style = the middle attention of the first up block with attention
(SDXL ``up_blocks.0.attentions.1``), composition = the last attention of the last down block
with attention (SDXL ``down_blocks.2.attentions.1``). A scale of 0 skips the adapter in
diffusers' processor, so weight 0 is byte-identical to no reference.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.engine import families
from backend.engine.errors import InvalidRequest, ModelNotFound
from backend.engine.types import (
    CheckpointEntry,
    ControlInput,
    ImageEncoderEntry,
    Inventory,
    IpAdapterEntry,
)

REFERENCE_TYPES = ("reference", "style", "composition", "face")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_ATTENTION = re.compile(r"^(up|down)_blocks\.(\d+)\.attentions\.(\d+)\.")


def is_reference(control: Any) -> bool:
    return getattr(control, "type", None) in REFERENCE_TYPES


def pick_adapter(
    control: Any, field: str, checkpoint: CheckpointEntry, inventory: Inventory
) -> IpAdapterEntry:
    """The IP-Adapter a reference control runs with; errors name ``field`` (``controls[i]``)."""
    name, kind = getattr(control, "model", None), getattr(control, "type", None)
    label = families.label(checkpoint.family)
    text = checkpoint.widths[1] if checkpoint.widths else None
    if name is not None:
        entry = next((item for item in inventory.ipadapters if item.name == name), None)
        if entry is None:
            raise ModelNotFound(
                f"IP-Adapter {name!r} is not installed (models/ipadapter/).", field=f"{field}.model"
            )
        if entry.problem is not None:
            raise InvalidRequest(f"{field}.model", name, entry.problem)
        if entry.family is not None and entry.family != checkpoint.family:
            raise InvalidRequest(
                f"{field}.model",
                name,
                f"is an IP-Adapter for {families.label(entry.family)}; the model "
                f"{checkpoint.name!r} is {label}",
            )
        if None not in (entry.text_width, text) and entry.text_width != text:
            raise InvalidRequest(
                f"{field}.model",
                name,
                f"was made for a model with text width {entry.text_width}; the model "
                f"{checkpoint.name!r} has {text}",
            )
        return entry
    fitting = [
        item
        for item in inventory.ipadapters
        if item.problem is None
        and item.family == checkpoint.family
        and (None in (item.text_width, text) or item.text_width == text)
    ]
    wanted = "face" if kind == "face" else "reference"
    preferred = [item for item in fitting if item.type == wanted] or fitting
    if not preferred:
        raise ModelNotFound(
            f"No IP-Adapter for {label} that fits the model {checkpoint.name!r} is installed: "
            "put one in the models/ipadapter/ folder (e.g. ip-adapter_sd15.safetensors, "
            "ip-adapter-plus-face_sd15.safetensors) and its image encoder in "
            "models/clip_vision/.",
            field=f"{field}.type",
        )
    return preferred[0]


def check_reference(
    index: int, control: Any, checkpoint: CheckpointEntry, inventory: Inventory
) -> None:
    """The submit-time checks of one reference control (image, numbers, adapter)."""
    field = f"controls[{index}]"
    image = getattr(control, "image", None)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidRequest(f"{field}.image", type(image).__name__, "expected (H, W, 4) uint8")
    for name, low, high in (("strength", 0.0, 2.0), ("start", 0.0, 1.0), ("end", 0.0, 1.0)):
        value = getattr(control, name, None)
        if not isinstance(value, (int, float)) or not (low <= float(value) <= high):
            raise InvalidRequest(f"{field}.{name}", value, f"expected {low:g}..{high:g}")
    if control.start > control.end:
        raise InvalidRequest(
            f"{field}.start", control.start, f"must not be after end={control.end:g}"
        )
    pick_adapter(control, field, checkpoint, inventory)


@dataclass
class ReferenceItem:
    control: ControlInput
    adapter: IpAdapterEntry
    encoder: ImageEncoderEntry


def plan_references(
    controls: list[ControlInput], checkpoint: CheckpointEntry, inventory: Inventory
) -> list[ReferenceItem]:
    items = []
    for index, control in enumerate(controls):
        if not is_reference(control):
            continue
        adapter = pick_adapter(control, f"controls[{index}]", checkpoint, inventory)
        encoder = next(e for e in inventory.image_encoders if e.name == adapter.image_encoder)
        items.append(ReferenceItem(control, adapter, encoder))
    return items


def _encoder_config(keys: dict, metadata: dict) -> Any:
    from transformers import CLIPVisionConfig

    patch = keys["vision_model.embeddings.patch_embedding.weight"].shape
    positions = keys["vision_model.embeddings.position_embedding.weight"].shape[0]
    layers = {int(k.split(".")[3]) for k in keys if k.startswith("vision_model.encoder.layers.")}
    hidden = int(patch[0])
    heads = int(metadata.get("num_attention_heads", 16 if hidden >= 1024 else max(1, hidden // 64)))
    openai_l = hidden == 1024 and len(layers) == 24
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=int(keys["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=len(layers),
        num_attention_heads=heads,
        patch_size=int(patch[2]),
        image_size=int(patch[2]) * round(math.sqrt(positions - 1)),
        projection_dim=int(keys["visual_projection.weight"].shape[0]),
        hidden_act=metadata.get("hidden_act", "quick_gelu" if openai_l else "gelu"),
    )


class ReferenceModels:
    """Loaded image encoders and adapter state dicts, cached (a few, least recently used)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._encoders: OrderedDict[tuple, Any] = OrderedDict()
        self._adapters: OrderedDict[str, dict] = OrderedDict()

    def _remember(self, cache: OrderedDict, key: Any, value: Any) -> Any:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.keep:
            cache.popitem(last=False)
        return value

    def encoder(self, entry: ImageEncoderEntry, device: Any, dtype: Any) -> Any:
        key = (entry.path, str(device), str(dtype))
        if key in self._encoders:
            self._encoders.move_to_end(key)
            return self._encoders[key]
        from safetensors import safe_open
        from transformers import CLIPVisionModelWithProjection

        from backend.engine.ipadapter_files import load_tensors

        state = load_tensors(__import__("pathlib").Path(entry.path))
        metadata: dict = {}
        if entry.path.endswith(".safetensors"):
            with safe_open(entry.path, framework="pt") as handle:
                metadata = handle.metadata() or {}
        model = CLIPVisionModelWithProjection(_encoder_config(state, metadata))
        state.pop("vision_model.embeddings.position_ids", None)
        model.load_state_dict(state)
        model = model.to(device=device, dtype=dtype).eval()
        return self._remember(self._encoders, key, model)

    def adapter(self, entry: IpAdapterEntry) -> dict:
        if entry.path in self._adapters:
            self._adapters.move_to_end(entry.path)
            return self._adapters[entry.path]
        from pathlib import Path

        from backend.engine.ipadapter_files import load_tensors

        flat = load_tensors(Path(entry.path))
        state: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
        for key, value in flat.items():
            group, _, rest = key.partition(".")
            if group in state:
                state[group][rest] = value
        return self._remember(self._adapters, entry.path, state)


def clip_pixels(image: np.ndarray, size: int) -> np.ndarray:
    """(1, 3, size, size) float32: the image over grey, shortest side to ``size`` (bicubic),
    centre-cropped, normalised as CLIP was trained."""
    from PIL import Image

    rgb = image[..., :3].astype(np.float32)
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        rgb = rgb * alpha + 127.0 * (1.0 - alpha)
    pil = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    scale = size / min(pil.size)
    width, height = max(size, round(pil.width * scale)), max(size, round(pil.height * scale))
    pil = pil.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    array = np.asarray(pil.crop((left, top, left + size, top + size)), np.float32) / 255.0
    array = (array - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return array.transpose(2, 0, 1)[None]


def image_embeds(encoder: Any, item: ReferenceItem, cfg: bool) -> Any:
    """One adapter's ``ip_adapter_image_embeds`` entry (negative first when ``cfg``)."""
    import torch

    size = int(encoder.config.image_size)
    parameter = next(encoder.parameters())
    pixels = torch.from_numpy(clip_pixels(item.control.image, size)).to(
        device=parameter.device, dtype=parameter.dtype
    )
    with torch.inference_mode():
        if item.adapter.projection == "plain":
            positive = encoder(pixels).image_embeds[None]
            negative = torch.zeros_like(positive)
        else:
            positive = encoder(pixels, output_hidden_states=True).hidden_states[-2][None]
            negative = encoder(torch.zeros_like(pixels), output_hidden_states=True)
            negative = negative.hidden_states[-2][None]
    return torch.cat([negative, positive]) if cfg else positive


def _layer_masks(names: list[str], kind: str) -> dict[str, float]:
    """1.0 on the attention layers a control of ``kind`` acts on, else 0.0."""
    if kind not in ("style", "composition"):
        return dict.fromkeys(names, 1.0)
    blocks: dict[tuple[str, int], set[int]] = {}
    for name in names:
        match = _ATTENTION.match(name)
        if match:
            blocks.setdefault((match[1], int(match[2])), set()).add(int(match[3]))
    side = "up" if kind == "style" else "down"
    chosen = sorted(index for direction, index in blocks if direction == side)
    if not chosen:
        return dict.fromkeys(names, 1.0)
    block = chosen[0] if kind == "style" else chosen[-1]
    attentions = sorted(blocks[(side, block)])
    attention = attentions[len(attentions) // 2] if kind == "style" else attentions[-1]
    prefix = f"{side}_blocks.{block}.attentions.{attention}."
    return {name: 1.0 if name.startswith(prefix) else 0.0 for name in names}


def scale_hook(unet: Any, items: list[ReferenceItem], steps: int) -> Callable[[float], None]:
    """Sets every adapter's per-layer scale for the step about to run (see the module doc)."""
    processors = [
        (name, processor)
        for name, processor in unet.attn_processors.items()
        if isinstance(getattr(processor, "scale", None), list)
    ]
    names = [name for name, _ in processors]
    masks = [_layer_masks(names, item.control.type) for item in items]

    def before_step(fraction: float) -> None:
        index = round(fraction * steps)
        for number, item in enumerate(items):
            control = item.control
            active = not (index / steps < control.start or (index + 1) / steps > control.end)
            weight = float(control.strength) if active else 0.0
            for name, processor in processors:
                processor.scale[number] = weight * masks[number][name]

    return before_step


@contextmanager
def adapters_loaded(pipe: Any, states: list[dict]) -> Iterator[None]:
    """The adapters in the UNet (one per reference control) for one job, unloaded after."""
    from diffusers.utils import logging as diffusers_logging

    count = len(states)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "image_encoder is not loaded": by design
    try:
        pipe.load_ip_adapter(
            states, subfolder=[""] * count, weight_name=[""] * count, image_encoder_folder=None
        )
    finally:
        diffusers_logging.set_verbosity(verbosity)
    try:
        yield
    finally:
        pipe.unload_ip_adapter()


class References:
    """What the engine asks about a job's reference images (one per engine)."""

    def __init__(self, inventory: Callable[[], Inventory]) -> None:
        self.inventory = inventory
        self.models = ReferenceModels()

    def used(self, request: Any) -> bool:
        return any(is_reference(control) for control in request.controls)

    def plan(self, request: Any, model_name: str) -> list[ReferenceItem]:
        if not self.used(request):
            return []
        inventory = self.inventory()
        checkpoint = next(c for c in inventory.checkpoints if c.name == model_name)
        return plan_references(request.controls, checkpoint, inventory)

    def loaded(self, request: Any, loaded: Any) -> Any:
        """A context with the job's adapters in the UNet (nothing without references)."""
        items = self.plan(request, loaded.name)
        if not items:
            return nullcontext()
        return adapters_loaded(loaded.pipe, [self.models.adapter(item.adapter) for item in items])

    def attach(self, task: Any, request: Any) -> None:
        """The task's ``ip_adapter_image_embeds`` and its per-step scale hook."""
        items = self.plan(request, task.model.name)
        if not items:
            return
        unet = task.model.pipe.unet
        cfg = task.cfg_scale > 1 and getattr(unet.config, "time_cond_proj_dim", None) is None
        embeds = []
        for item in items:
            encoder = self.models.encoder(item.encoder, unet.device, unet.dtype)
            embeds.append(image_embeds(encoder, item, cfg).to(unet.dtype))
        task.extra_kwargs["ip_adapter_image_embeds"] = embeds
        task.before_step = scale_hook(unet, items, task.steps)
