"""``diffusion-layers generate``: one generation from the command line, no server, no Krita.

Writes each result layer exactly as the plugin receives it (RGBA, transparent outside the
selection, its offset and parameters in the PNG's text chunks) and, with ``--composite``, the
region with the layer merged over it.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("txt2img", "img2img", "inpaint", "outpaint", "upscale", "edit", "layers")
DEFAULT_SIZE = 512
TINY_NOTE = (
    "note: '{model}' is a built-in tiny model with random weights: it tests the wiring, "
    "it does not make art."
)


class UsageError(Exception):
    """A bad command-line value; printed as one line, exit status 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="generate one image (or a batch) headlessly",
        description="Generate without the server. Batch N writes OUT, OUT-1, ... OUT-(N-1) "
        "(e.g. out.png, out-1.png); --composite files are numbered the same way. Built-in "
        "models: tiny, tiny-inpaint, tiny-sdxl, tiny-sdxl-inpaint (random weights).",
    )
    parser.add_argument("--model", required=True, help="checkpoint name, or a tiny built-in")
    parser.add_argument("--vae", help="VAE name from models/vae/ (default: the model's)")
    parser.add_argument("--mode", choices=MODES, default="txt2img")
    parser.add_argument("--image", help="the region (PNG/JPEG/WebP; transparency = empty canvas)")
    parser.add_argument(
        "--mask", help="the selection: its alpha when it has transparency, else its greyscale"
    )
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="", help="negative prompt")
    parser.add_argument("--seed", type=int, help="seed of the first image (default: random)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0, help="guidance scale")
    parser.add_argument("--sampler", default="dpmpp_2m_karras")
    parser.add_argument("--strength", type=float, default=1.0, help="denoise strength 0..1")
    parser.add_argument("--batch", type=int, default=1, help="images, seeds SEED, SEED+1, ...")
    parser.add_argument("--clip-skip", type=int, default=1)
    parser.add_argument(
        "--width", type=int, help=f"region width (default: image's or {DEFAULT_SIZE})"
    )
    parser.add_argument("--height", type=int, help="region height")
    parser.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="TYPE:IMAGE[:MODEL[:STRENGTH]]",
        help="a control layer (repeatable); MODEL empty = pick by type; an IMAGE of another "
        "size is scaled to cover the region",
    )
    parser.add_argument(
        "--raw-control",
        action="store_true",
        help="control images already are maps (skip the preprocessors)",
    )
    parser.add_argument("--lora", action="append", default=[], metavar="NAME:WEIGHT")
    family_modes = parser.add_argument_group("--mode edit / --mode layers (docs/protocol.md)")
    family_modes.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="FILE",
        help="--mode edit: a reference image at its own size (repeatable, up to the model's "
        "limit); the prompt is the instruction",
    )
    family_modes.add_argument(
        "--layers",
        type=int,
        help="--mode layers: how many RGBA layers (default: the model's); OUT, OUT-1, ... "
        "bottom first; --composite writes them all merged",
    )
    upscale = parser.add_argument_group("--mode upscale (docs/upscale.md)")
    upscale.add_argument("--factor", type=float, default=2.0, help="1..4: the result's scale")
    upscale.add_argument("--upscaler", help="model from models/upscale/ (default: Lanczos)")
    upscale.add_argument("--refine", action="store_true", help="tiled diffusion refine pass")
    upscale.add_argument("--tile-size", type=int, help="refine tile side (default: native)")
    upscale.add_argument("--tile-overlap", type=int, help="refine tile overlap (default: auto)")
    parser.add_argument(
        "--hires",
        choices=("auto", "on", "off"),
        default="auto",
        help="two-pass high resolution for regions much larger than the model's size",
    )
    parser.add_argument("--models-dir", help="folder with checkpoints/ controlnet/ lora/")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--dtype", default="auto", help="auto | float16 | bfloat16 | float32")
    parser.add_argument("--out", required=True, help="layer PNG (RGBA, metadata, offset)")
    parser.add_argument("--composite", help="also write the region with the layer merged")
    parser.set_defaults(func=run)
    return parser


def numbered(path: str, index: int) -> Path:
    """out.png, out-1.png, out-2.png ..."""
    target = Path(path)
    return target if index == 0 else target.with_name(f"{target.stem}-{index}{target.suffix}")


def load_rgba(path: str, option: str = "--image") -> Any:
    """An image file as upright RGBA, decoded exactly as the API decodes an image part
    (backend/engine/image_decode.py: PNG of any type and depth, JPEG, WebP, EXIF orientation)."""
    from backend.engine.image_decode import ImageDecodeError, decode_file
    from backend.engine.request_checks import DEFAULT_MAX_PIXELS

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"{option}: cannot read {path!r}: {error.strerror or error}") from error
    try:
        return decode_file(data, option, DEFAULT_MAX_PIXELS)
    except ImageDecodeError as error:
        raise UsageError(f"{error.message} ({path})") from error


def load_mask(path: str) -> Any:
    """The selection (255 = selected) by the API's one rule: the alpha channel when the image
    has transparency, else its luminance."""
    from backend.engine.image_decode import mask_from_rgba

    return mask_from_rgba(load_rgba(path, "--mask"))


def parse_control(spec: str, raw: bool) -> Any:
    from backend.engine.types import ControlInput

    kind, _, rest = spec.partition(":")
    parts = rest.split(":")
    for end in range(len(parts), 0, -1):  # the image path may itself hold ':'
        path = ":".join(parts[:end])
        if os.path.isfile(path):
            extras = parts[end:]
            break
    else:
        raise UsageError(
            f"--control {spec!r}: expected TYPE:IMAGE[:MODEL[:STRENGTH]] with an existing IMAGE"
        )
    if len(extras) > 2:
        raise UsageError(f"--control {spec!r}: too many ':' fields")
    model = extras[0] if extras and extras[0] else None
    try:
        strength = float(extras[1]) if len(extras) == 2 else 1.0
    except ValueError as error:
        raise UsageError(f"--control {spec!r}: STRENGTH must be a number") from error
    pixels = load_rgba(path, "--control")
    return ControlInput(kind, pixels, model=model, strength=strength, preprocess=not raw)


def parse_lora(spec: str) -> Any:
    from backend.engine.types import LoraInput

    name, sep, weight = spec.rpartition(":")
    if not sep:
        return LoraInput(spec, 1.0)
    try:
        return LoraInput(name, float(weight))
    except ValueError as error:
        raise UsageError(f"--lora {spec!r}: expected NAME:WEIGHT") from error


def build_request(args: argparse.Namespace) -> Any:
    """The GenerationRequest the arguments describe (images loaded, sizes resolved)."""
    import numpy as np

    from backend.engine.compositing import resize_cover
    from backend.engine.masks import NOISE_LEVEL, has_selection
    from backend.engine.types import ControlInput, GenerationRequest, UpscaleSettings
    from backend.engine.used_inputs import unused_inputs

    # 1. Nothing the mode would ignore (a txt2img --image is only the --composite base).
    image_used = bool(args.image) and (args.mode != "txt2img" or not args.composite)
    unused = unused_inputs(args.mode, image_used, bool(args.mask))
    if unused:
        raise UsageError(f"--{unused[0][0]}: {unused[0][1]}")
    if args.mode == "upscale" and args.composite:
        raise UsageError("--composite: an upscale result is larger than the region; leave it out")
    # 2. Region pixels and size.
    image = load_rgba(args.image) if args.image else None
    if image is not None:
        height, width = image.shape[:2]
        if (args.width or width, args.height or height) != (width, height):
            raise UsageError(f"--width/--height differ from the image's size {width}x{height}")
    else:
        width, height = args.width or DEFAULT_SIZE, args.height or DEFAULT_SIZE
    if args.mode == "txt2img":
        image = None  # the --composite base only (write_results reads it again)
    elif image is None:
        if args.mode != "outpaint":
            raise UsageError(f"--mode {args.mode} needs --image")
        image = np.zeros((height, width, 4), np.uint8)  # outpaint into an empty canvas
    # 3. Selection.
    mask = load_mask(args.mask) if args.mask else None
    if mask is None and args.mode in ("inpaint", "outpaint"):
        raise UsageError(f"--mode {args.mode} needs --mask")
    if mask is not None and mask.shape != (height, width):
        raise UsageError(f"--mask is {mask.shape[1]}x{mask.shape[0]}, the region {width}x{height}")
    if mask is not None and not has_selection(mask):
        raise UsageError(
            f"--mask: nothing is selected (every value is at most {NOISE_LEVEL} of 255, which "
            "counts as unselected noise)"
        )
    seed = args.seed if args.seed is not None else random.randint(0, 2**32 - 1)
    controls = [parse_control(spec, args.raw_control) for spec in args.control]
    for control in controls:  # another size: scaled to cover the region (as on the API)
        if control.image.shape[:2] != (height, width):
            control.image = resize_cover(control.image, width, height)
    if args.reference and args.mode != "edit":
        raise UsageError("--reference: only --mode edit takes reference images")
    controls += [  # an edit's reference images keep their own size (as on the API)
        ControlInput("reference", load_rgba(path, "--reference"), model=None)
        for path in args.reference
    ]
    return GenerationRequest(
        mode=args.mode,
        width=width,
        height=height,
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        vae=args.vae,
        image=image,
        mask=mask,
        strength=args.strength,
        steps=args.steps,
        cfg_scale=args.cfg,
        sampler=args.sampler,
        seed=seed,
        batch=args.batch,
        clip_skip=args.clip_skip,
        controls=controls,
        loras=[parse_lora(spec) for spec in args.lora],
        upscale=UpscaleSettings(
            factor=args.factor,
            model=args.upscaler,
            refine=args.refine,
            tile_size=args.tile_size,
            tile_overlap=args.tile_overlap,
        ),
        hires={"auto": None, "on": True, "off": False}[args.hires],
        layers=args.layers,
    )


def write_results(args: argparse.Namespace, request: Any, layers: list) -> list[Path]:
    import numpy as np

    from backend.engine.compositing import flatten
    from backend.engine.metadata import encode_png

    written: list[Path] = []
    base = request.image
    if base is None and args.image:
        base = load_rgba(args.image)
    if base is None:
        base = np.zeros((request.height, request.width, 4), np.uint8)
    stacked = request.mode == "layers"  # one composite of every layer, bottom first
    for index, layer in enumerate(layers):
        target = numbered(args.out, index)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_png(layer.image, layer.metadata, offset=(layer.x, layer.y)))
        written.append(target)
        if stacked:
            base = flatten(base, layer.image, layer.x, layer.y)
        if args.composite and (not stacked or index == len(layers) - 1):
            merged = base if stacked else flatten(base, layer.image, layer.x, layer.y)
            composite = numbered(args.composite, 0 if stacked else index)
            composite.parent.mkdir(parents=True, exist_ok=True)
            composite.write_bytes(encode_png(merged, layer.metadata))
            written.append(composite)
    return written


def run(args: argparse.Namespace) -> int:
    from backend.engine.errors import EngineError
    from backend.fields import with_field

    # 1. Parse everything before loading a model.
    try:
        request = build_request(args)
    except (UsageError, EngineError) as error:
        message = getattr(error, "message", str(error))
        print(f"error: {with_field(message, getattr(error, 'field', None))}", file=sys.stderr)
        return 2
    if args.model.startswith("tiny"):
        print(TINY_NOTE.format(model=args.model), file=sys.stderr)
    # 2. Generate.
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    config = EngineConfig(
        models_dir=args.models_dir, default_model=args.model, device=args.device, dtype=args.dtype
    )
    try:
        engine = Engine(config)
        layers = engine.generate(request)
        written = write_results(args, request, layers)
    except EngineError as error:
        log.debug("generation failed", exc_info=True)
        print(f"error: {with_field(error.message, error.field)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write the result: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
