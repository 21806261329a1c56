"""What a LoRA file is, from its safetensors header only: format, family and text width.

Artists download LoRAs in several layouts. The ones diffusers loads (``load_lora_weights``)
are run; the others are listed with a ``problem`` sentence and refused at submit, so a job
never fails half-way on a file we could have read up front:

* ``lora``: kohya/A1111 (``lora_unet_*``, ``lora_te_*``, SDXL ``lora_te1_``/``lora_te2_``,
  ``.lora_down``/``.lora_up``/``.alpha``) -- loaded by diffusers.
* ``locon``: the same with convolution layers (LyCORIS LoCon, kohya "LoRA-C3Lier") -- loaded.
* ``diffusers``: diffusers/PEFT keys (``unet.*.lora_A``/``lora_B``, ``lora.down``) -- loaded.
* ``dotted``: the bare dotted layout of Qwen-Image-Lightning, musubi-tuner and ai-toolkit
  (``[diffusion_model.|transformer.]transformer_blocks.0.attn.to_q.lora_down``/``lora_up``/
  ``alpha``) -- loaded where the family's ``LoraSpec.dotted`` says so (converted to PEFT
  by ``lora.dotted_to_peft`` or diffusers), refused elsewhere.
* ``loha``: LyCORIS LoHa (``hada_*``) with diffusers layer names -- loaded as PEFT LoHa
  adapters (lycoris.py); in the original SDXL layer names (``input_blocks_*``) -- refused.
* ``lokr``: LyCORIS LoKr (``lokr_*``) on linear layers -- turned into the exact LoRA pair and
  loaded (lycoris.py); on convolution layers (4-D or Tucker ``lokr_t2``) -- refused.
* ``ia3``, ``full``, ``glora`` -- refused with a sentence naming the format.

The family comes from the family registry (``backend/engine/families``): the training
metadata, then the keys (each family's ``matches_lora``: SDXL's two text encoders, its deeper
transformer blocks), then the width of the cross-attention inputs (``LoraSpec.text_width``:
768 SD1.5, 2048 SDXL). ``text_width`` is that width whenever the file tells it: a LoRA only fits a
checkpoint whose UNet has the same text width, which catches LoRAs made for another model of
the same family name (and the tiny test models).
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.engine import families

Header = dict[str, tuple[int, ...]]

LOADABLE = ("lora", "locon", "diffusers", "dotted", "loha", "lokr")
#: the original (LDM) layer names, which only diffusers' LoRA converters translate
LDM_BLOCKS = ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")
#: format -> how the refusal names it
REFUSED_NAMES = {
    "ia3": "a LyCORIS (IA)^3 file",
    "full": "a LyCORIS full/diff file (whole-weight differences)",
    "glora": "a LyCORIS GLoRA file",
}
OTHER_FAMILY_WIDTHS = {1024: "Stable Diffusion 2.x"}
#: key prefixes of LoRAs for model families we do not run
OTHER_FAMILY_PREFIXES = (
    ("lora_transformer_", "Flux or SD3"),
    ("transformer.", "Flux or SD3"),
    ("diffusion_model.double_blocks", "Flux"),
    ("lora_unet_double_blocks", "Flux"),
    ("lora_unet_joint_blocks", "SD3"),
)


@dataclass(frozen=True)
class LoraFacts:
    format: str  # one of LOADABLE or REFUSED_NAMES, or "unknown"
    family: str | None  # a family id (families.ids()) | None (not told)
    text_width: int | None  # the UNet's cross-attention input width, when the keys show it
    problem: str | None = None  # why it cannot be used (a sentence), None when it can


def lora_format(keys: Header) -> str:
    """The layout of a LoRA's tensors (see the module doc)."""
    names = list(keys)
    if any(".hada_w1_a" in key or ".hada_w1_b" in key for key in names):
        return "loha"
    if any(".lokr_w1" in key or ".lokr_w2" in key for key in names):
        return "lokr"
    if any(key.endswith((".diff", ".diff_b")) for key in names):
        return "full"
    if any(key.endswith(".a1.weight") for key in names):
        return "glora"
    if any(key.endswith(".on_input") for key in names):
        return "ia3"
    kohya = [key for key in names if key.startswith(("lora_unet_", "lora_te"))]
    if kohya and any(".lora_down." in key for key in kohya):
        conv = any(
            ".lora_down." in key and len(keys[key]) == 4 and keys[key][2:] != (1, 1)
            for key in kohya
        ) or any(".lora_down." in key and ("_resnets_" in key or "_conv" in key) for key in kohya)
        return "locon" if conv else "lora"
    if any(is_dotted_down(key) for key in names):
        return "dotted"
    if any(
        key.endswith((".lora_A.weight", ".lora_B.weight", ".lora.down.weight", ".lora.up.weight"))
        or ".lora_linear_layer." in key
        for key in names
    ):
        return "diffusers"
    return "unknown"


def is_dotted_down(key: str) -> bool:
    """Whether ``key`` is a down matrix of the bare dotted layout: a dotted module path (not
    kohya's ``lora_unet_a_b_c``) ending in ``.lora_down.weight``."""
    if not key.endswith(".lora_down.weight") or key.startswith(("lora_unet_", "lora_te")):
        return False
    return "." in key.removesuffix(".lora_down.weight")


def _text_width(keys: Header) -> int | None:
    """The input width of the first cross-attention key/value projection a LoRA changes."""
    for key, shape in sorted(keys.items()):
        if "attn2" not in key or not ("to_k" in key or "to_v" in key):
            continue
        if key.endswith((".lora_down.weight", ".lora_A.weight", ".lora.down.weight", ".hada_w1_b")):
            return int(shape[1]) if len(shape) >= 2 else None
        if key.endswith(".down.weight") and "lora_linear_layer" in key:
            return int(shape[1]) if len(shape) >= 2 else None
        if key.endswith((".lokr_w1", ".lokr_w1_b")):  # kron: in = w1 columns x w2 columns
            layer = key.rsplit(".", 1)[0]
            w2 = keys.get(f"{layer}.lokr_w2") or keys.get(f"{layer}.lokr_w2_b")
            if len(shape) == 2 and w2 is not None and len(w2) == 2:
                return int(shape[1]) * int(w2[1])
    return None


FORMAT_LABELS = {"loha": "LoHa", "lokr": "LoKr"}
#: the tensors each layer of a LyCORIS file needs (any one alternative of each group)
_NEEDED = {
    "loha": ((".hada_w1_a",), (".hada_w1_b",), (".hada_w2_a",), (".hada_w2_b",)),
    "lokr": ((".lokr_w1", ".lokr_w1_a"), (".lokr_w2", ".lokr_w2_a")),
}


def _incomplete_layer(keys: Header, fmt: str) -> str | None:
    """The first layer of a LoHa/LoKr file that lacks a tensor its format needs."""
    marker = ".hada_" if fmt == "loha" else ".lokr_"
    layers = sorted({key.split(marker)[0] for key in keys if marker in key})
    for layer in layers:
        for group in _NEEDED[fmt]:
            if not any(layer + suffix in keys for suffix in group):
                return layer
        if layer + ".lokr_w1_a" in keys and layer + ".lokr_w1_b" not in keys:
            return layer
        if layer + ".lokr_w2_a" in keys and layer + ".lokr_w2_b" not in keys:
            return layer
    return None


def _family_from_metadata(metadata: dict[str, str]) -> str | None:
    """A registered family id, or "sd2"/"flux"/"sd3" for families we do not run."""
    known = families.lora_family_from_metadata(metadata)
    if known is not None:
        return known.id
    version = metadata.get("ss_base_model_version", "").lower()
    architecture = metadata.get("modelspec.architecture", "").lower()
    if version.startswith("sd_v2") or architecture.startswith("stable-diffusion-v2"):
        return "sd2"
    if "flux" in version or "flux" in architecture:
        return "flux"
    if "sd3" in version or "stable-diffusion-3" in architecture:
        return "sd3"
    return None


def _family_from_keys(keys: Header) -> str | None:
    family = families.lora_family_from_keys(keys)
    return None if family is None else family.id


def lora_facts(keys: Header, metadata: dict[str, str], name: str) -> LoraFacts:
    """Format, family, text width and (when it cannot be used) the reason, from a header."""
    fmt = lora_format(keys)
    width = _text_width(keys)
    family = _family_from_metadata(metadata) or _family_from_keys(keys)
    if family is None and width is not None:
        by_width = families.lora_family_from_width(width)
        family = None if by_width is None else by_width.id
    if family is None and width not in OTHER_FAMILY_WIDTHS:
        fallback = families.lora_family_from_fallback(keys)
        family = None if fallback is None else fallback.id
    # 1. Families we do not run.
    other = {"sd2": "Stable Diffusion 2.x", "flux": "Flux", "sd3": "SD3"}.get(family or "")
    if other is None and width in OTHER_FAMILY_WIDTHS and family is None:
        other = OTHER_FAMILY_WIDTHS[width]
    if other is None and family is None:  # a registered family's keys are its own
        other = next((label for prefix, label in OTHER_FAMILY_PREFIXES if _any(keys, prefix)), None)
    if other is not None:
        runs = " and ".join(f.label for f in families.FAMILIES)
        problem = f"The LoRA {name!r} is for {other}; Diffusion Layers runs {runs}."
        return LoraFacts(fmt, None, width, problem)
    # 2. Layouts diffusers does not load.
    if fmt in REFUSED_NAMES:
        problem = (
            f"The LoRA {name!r} is {REFUSED_NAMES[fmt]}, which Diffusion Layers cannot load "
            "yet: use a LoRA or LoCon version of it."
        )
        return LoraFacts(fmt, family, width, problem)
    if fmt == "loha" and any(key.startswith(LDM_BLOCKS) for key in keys):
        problem = (
            f"The LoRA {name!r} is a LyCORIS LoHa file with the original SDXL layer names, "
            "which Diffusion Layers cannot load yet: use a LoRA or LoCon version of it."
        )
        return LoraFacts(fmt, family, width, problem)
    broken = _incomplete_layer(keys, fmt) if fmt in _NEEDED else None
    if broken is not None:
        problem = (
            f"The LoRA {name!r} is damaged: its layer {broken} lacks weights a "
            f"{FORMAT_LABELS[fmt]} file has."
        )
        return LoraFacts(fmt, family, width, problem)
    if fmt == "lokr" and any(
        (".lokr_" in key and len(shape) != 2) or ".lokr_t2" in key for key, shape in keys.items()
    ):
        problem = (
            f"The LoRA {name!r} is a LyCORIS LoKr file that changes convolution layers, which "
            "Diffusion Layers cannot load yet: use a LoRA or LoCon version of it."
        )
        return LoraFacts(fmt, family, width, problem)
    if fmt == "unknown":
        from backend.engine.detect import describe_header

        problem = (
            f"The file {name!r} in the lora folder holds no LoRA weights Diffusion Layers "
            f"knows (kohya, LoCon or diffusers layout): its header holds "
            f"{describe_header(keys)}."
        )
        return LoraFacts(fmt, family, width, problem)
    if fmt == "dotted" and family is not None and not families.get(family).lora.dotted(keys):
        problem = (
            f"The LoRA {name!r} is in the bare dotted layout (transformer_blocks.*.lora_down), "
            f"which Diffusion Layers cannot load for {families.label(family)} yet: use a "
            "kohya or diffusers version of it."
        )
        return LoraFacts(fmt, family, width, problem)
    # 3. A loadable file whose family nothing tells.
    if family is None:
        problem = (
            f"Diffusion Layers cannot tell which model family the LoRA {name!r} is for (no "
            "training metadata, no cross-attention weights)."
        )
        return LoraFacts(fmt, None, width, problem)
    return LoraFacts(fmt, family, width, None)


def _any(keys: Header, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)
