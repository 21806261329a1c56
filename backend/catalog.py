"""The default model set and where models live on disk.

One models folder is shared by the server (``diffusion-layers serve``) and the model manager
(``diffusion-layers models ...``). It holds one sub-folder per kind of file::

    <models dir>/checkpoints/   SD1.5 / SDXL checkpoints (single .safetensors files)
    <models dir>/controlnet/    ControlNet models
    <models dir>/lora/          LoRAs
    <models dir>/vae/           VAEs
    <models dir>/text_encoders/ text encoders of transformer families (Flux.1, Z-Image, FLUX.2)

The folder is, in this order: an explicit ``--models-dir``, the environment variable
``DIFFUSION_LAYERS_MODELS``, or the per-user data folder (``~/.local/share/diffusion-layers/models``
on Linux, ``~/Library/Application Support/diffusion-layers/models`` on macOS,
``%LOCALAPPDATA%\\diffusion-layers\\models`` on Windows). The per-user folder is the default so
that gigabytes of weights survive deleting or re-cloning the checkout.

Every URL points at the Hugging Face Hub (``https://huggingface.co``, replaceable with the
environment variable ``HF_ENDPOINT`` for mirrors and tests). ``sha256`` is pinned only where a
hash was actually seen; where it is None the downloader verifies against the SHA-256 the Hub
publishes for LFS files (the ``X-Linked-Etag`` header of the resolve URL).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backend.engine import families

MODELS_ENV = "DIFFUSION_LAYERS_MODELS"
HF_ENDPOINT_ENV = "HF_ENDPOINT"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
APP_DIR_NAME = "diffusion-layers"

# kind -> sub-folder of the models folder
FOLDERS: dict[str, str] = {
    "checkpoint": "checkpoints",
    "controlnet": "controlnet",
    "lora": "lora",
    "vae": "vae",
    "text_encoder": "text_encoders",  # Flux.1's CLIP-L and T5-XXL, Z-Image's Qwen3 (ComfyUI layout)
}
FAMILIES = families.ids()


class CatalogError(ValueError):
    """A model name or a models folder is unusable; the message names it."""


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable file: where it comes from and where it goes."""

    name: str  # what the CLI takes: ``diffusion-layers models download NAME``
    kind: str  # a key of FOLDERS
    family: str  # a family id (backend/engine/families)
    repo: str  # Hugging Face repository id
    filename: str  # path inside the repository
    description: str
    approx_gb: float | None = None  # for display only
    sha256: str | None = None  # pinned only where seen; else the Hub's LFS hash is used
    revision: str = "main"
    inpaint: bool = False
    control_type: str | None = None  # for ControlNets: the control type it serves
    default: bool = False  # part of the default set install/run.sh downloads

    @property
    def folder(self) -> str:
        return FOLDERS[self.kind]

    @property
    def file_name(self) -> str:
        """The file's name inside its sub-folder (the repository file's base name)."""
        return self.filename.rsplit("/", 1)[-1]

    @property
    def model_name(self) -> str:
        """The name the server's inventory gives this file (file name without extension)."""
        return self.file_name.rsplit(".", 1)[0]

    def url(self, endpoint: str | None = None) -> str:
        return hub_url(self.repo, self.filename, self.revision, endpoint)

    def local_path(self, models_dir: str | os.PathLike[str]) -> Path:
        return Path(models_dir) / self.folder / self.file_name


_CN_REPO = "comfyanonymous/ControlNet-v1-1_fp16_safetensors"


def _controlnet(name: str, filename: str, control_type: str, default: bool) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        kind="controlnet",
        family="sd15",
        repo=_CN_REPO,
        filename=filename,
        description=f"ControlNet 1.1 {control_type} for SD1.5 (fp16)",
        approx_gb=0.72,
        control_type=control_type,
        default=default,
    )


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="dreamshaper-8",
        kind="checkpoint",
        family="sd15",
        repo="Lykon/DreamShaper",
        filename="DreamShaper_8_pruned.safetensors",
        description="DreamShaper 8: SD1.5 checkpoint for artwork and photos",
        approx_gb=2.1,
        default=True,
    ),
    CatalogEntry(
        name="dreamshaper-8-inpainting",
        kind="checkpoint",
        family="sd15",
        repo="Lykon/DreamShaper",
        filename="DreamShaper_8_INPAINTING.inpainting.safetensors",
        description="DreamShaper 8 inpainting variant (used for inpaint/outpaint)",
        approx_gb=2.1,
        inpaint=True,
        default=True,
    ),
    CatalogEntry(
        name="sdxl-base-1.0",
        kind="checkpoint",
        family="sdxl",
        repo="stabilityai/stable-diffusion-xl-base-1.0",
        filename="sd_xl_base_1.0.safetensors",
        description="Stable Diffusion XL base 1.0 (needs ~8 GB of VRAM)",
        approx_gb=6.9,
    ),
    # Flux.1 schnell and Z-Image Turbo (both Apache-2.0), as ComfyUI users keep them: the
    # transformer in checkpoints/, text encoders in text_encoders/, the VAE in vae/. Sizes are
    # for display; None where not verified (no Hub access when these were entered). No hash is
    # pinned: the downloader checks the Hub's LFS SHA-256.
    CatalogEntry(
        name="flux1-schnell",
        kind="checkpoint",
        family="flux1-schnell",
        repo="black-forest-labs/FLUX.1-schnell",
        filename="flux1-schnell.safetensors",
        description="FLUX.1 schnell transformer (bf16; 4 steps; needs clip-l, t5xxl and flux-vae)",
        approx_gb=23.8,
    ),
    CatalogEntry(
        name="flux-vae",
        kind="vae",
        family="flux1-schnell",
        repo="black-forest-labs/FLUX.1-schnell",
        filename="ae.safetensors",
        description="The Flux VAE (16 latent channels), used by Flux.1 and Z-Image",
        approx_gb=0.34,
    ),
    CatalogEntry(
        name="clip-l",
        kind="text_encoder",
        family="flux1-schnell",
        repo="comfyanonymous/flux_text_encoders",
        filename="clip_l.safetensors",
        description="CLIP-L text encoder for Flux.1",
        approx_gb=0.25,
    ),
    CatalogEntry(
        name="t5xxl-fp8",
        kind="text_encoder",
        family="flux1-schnell",
        repo="comfyanonymous/flux_text_encoders",
        filename="t5xxl_fp8_e4m3fn.safetensors",
        description="T5-XXL text encoder for Flux.1 in fp8 (half the memory of fp16)",
        approx_gb=4.9,
    ),
    CatalogEntry(
        name="t5xxl-fp16",
        kind="text_encoder",
        family="flux1-schnell",
        repo="comfyanonymous/flux_text_encoders",
        filename="t5xxl_fp16.safetensors",
        description="T5-XXL text encoder for Flux.1 in fp16",
        approx_gb=9.8,
    ),
    CatalogEntry(
        name="z-image-turbo",
        kind="checkpoint",
        family="zimage",
        repo="Comfy-Org/z_image_turbo",
        filename="split_files/diffusion_models/z_image_turbo_bf16.safetensors",
        description="Z-Image Turbo transformer (bf16; 8 steps; needs qwen3-4b and flux-vae)",
    ),
    CatalogEntry(
        name="qwen3-4b",
        kind="text_encoder",
        family="zimage",
        repo="Comfy-Org/z_image_turbo",
        filename="split_files/text_encoders/qwen_3_4b.safetensors",
        description="Qwen3-4B text encoder for Z-Image and FLUX.2 klein 4B",
    ),
    # FLUX.2 klein 4B (Apache-2.0; the 9B models are non-commercial): BFL's single-file
    # transformer and the diffusers-layout VAE from its repository (sizes as the Hub's file
    # tree lists them: 7.75 GB, 168 MB; file names not checked against the Hub when entered,
    # no hash pinned). Its text encoder is Qwen3-4B: the ``qwen3-4b`` entry above.
    CatalogEntry(
        name="flux2-klein-4b",
        kind="checkpoint",
        family="flux2_klein",
        repo="black-forest-labs/FLUX.2-klein-4B",
        filename="flux-2-klein-4b.safetensors",
        description="FLUX.2 klein 4B transformer (bf16; 4 steps; edits with up to 3 references; "
        "needs qwen3-4b and flux2-vae)",
        approx_gb=7.75,
    ),
    CatalogEntry(
        name="flux2-vae",
        kind="vae",
        family="flux2_klein",
        repo="black-forest-labs/FLUX.2-klein-4B",
        filename="vae/diffusion_pytorch_model.safetensors",
        description="The FLUX.2 VAE (32 latent channels, diffusers layout), used by FLUX.2 klein",
        approx_gb=0.17,
    ),
    _controlnet("controlnet-canny", "control_v11p_sd15_canny_fp16.safetensors", "canny", True),
    _controlnet("controlnet-depth", "control_v11f1p_sd15_depth_fp16.safetensors", "depth", True),
    _controlnet(
        "controlnet-lineart", "control_v11p_sd15_lineart_fp16.safetensors", "lineart", True
    ),
    _controlnet(
        "controlnet-scribble", "control_v11p_sd15_scribble_fp16.safetensors", "scribble", True
    ),
    _controlnet(
        "controlnet-openpose", "control_v11p_sd15_openpose_fp16.safetensors", "openpose", False
    ),
    _controlnet(
        "controlnet-softedge", "control_v11p_sd15_softedge_fp16.safetensors", "softedge", False
    ),
    _controlnet("controlnet-tile", "control_v11f1e_sd15_tile_fp16.safetensors", "tile", False),
    _controlnet(
        "controlnet-inpaint", "control_v11p_sd15_inpaint_fp16.safetensors", "inpaint", False
    ),
)

DEFAULT_SET_NAME = "default"


def hf_endpoint(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    endpoint = env.get(HF_ENDPOINT_ENV) or DEFAULT_HF_ENDPOINT
    return endpoint.rstrip("/")


def hub_url(repo: str, filename: str, revision: str = "main", endpoint: str | None = None) -> str:
    """The Hub's download ("resolve") URL of one file of a model repository."""
    if not repo or repo.count("/") != 1:
        raise CatalogError(f"repo={repo!r}: expected 'owner/name'")
    if not filename or filename.startswith("/"):
        raise CatalogError(f"filename={filename!r}: expected a path inside the repository")
    base = (endpoint or hf_endpoint()).rstrip("/")
    return f"{base}/{repo}/resolve/{revision}/{filename}"


def entries(catalog: tuple[CatalogEntry, ...] = CATALOG) -> list[CatalogEntry]:
    return list(catalog)


def default_set(catalog: tuple[CatalogEntry, ...] = CATALOG) -> list[CatalogEntry]:
    return [entry for entry in catalog if entry.default]


def find_entry(name: str, catalog: tuple[CatalogEntry, ...] = CATALOG) -> CatalogEntry:
    for entry in catalog:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in catalog)
    raise CatalogError(f"model={name!r}: not in the catalog. Known: {DEFAULT_SET_NAME}, {known}")


def select(names: list[str], catalog: tuple[CatalogEntry, ...] = CATALOG) -> list[CatalogEntry]:
    """Entries for the given names; ``default`` expands to the default set. No duplicates."""
    chosen: list[CatalogEntry] = []
    for name in names:
        group = default_set(catalog) if name == DEFAULT_SET_NAME else [find_entry(name, catalog)]
        chosen.extend(entry for entry in group if entry not in chosen)
    return chosen


def default_models_dir(
    env: Mapping[str, str] | None = None, platform: str | None = None, home: Path | None = None
) -> Path:
    """The per-user models folder for this platform (ignores DIFFUSION_LAYERS_MODELS)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    if platform.startswith("win"):
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / APP_DIR_NAME / "models"


def resolve_models_dir(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``--models-dir`` if given, else ``$DIFFUSION_LAYERS_MODELS``, else the per-user folder."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser()
    if env.get(MODELS_ENV):
        return Path(env[MODELS_ENV]).expanduser()
    return default_models_dir(env)


def ensure_layout(models_dir: str | os.PathLike[str]) -> Path:
    """Create the models folder and its sub-folders (idempotent); return the folder."""
    root = Path(models_dir)
    if root.exists() and not root.is_dir():
        raise CatalogError(f"models_dir={str(root)!r}: exists and is not a folder")
    for folder in FOLDERS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root
