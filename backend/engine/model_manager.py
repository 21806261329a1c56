"""Which models are installed, which are loaded, and on what device.

``ModelManager`` keeps an LRU of loaded checkpoints (``cache_models`` entries within a memory
budget), a small cache of ControlNets, resolves ControlNets by control type for a model's
architecture, applies LoRAs for one job only and loads the depth model (models_dir/depth/).
The tiny built-ins are always in the inventory; their files are written on first use.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from backend.engine import families
from backend.engine.architecture import (
    Signature,
    controlnet_signature,
    signature_of_config,
    unet_signature,
)
from backend.engine.builtins import BUILTIN, builtin_inventory
from backend.engine.devices import default_budget_bytes, resolve_device, resolve_dtype
from backend.engine.errors import InvalidRequest, ModelNotFound
from backend.engine.inventory import check_model_name, scan_models
from backend.engine.loader import LoadedModel, load_checkpoint, load_controlnet
from backend.engine.lora import loras_applied as apply_loras
from backend.engine.pipelines import release_model
from backend.engine.preprocess import DepthEstimator, load_depth_estimator
from backend.engine.tiny import (
    controlnet_config,
    ensure_tiny_models,
)
from backend.engine.tokenizer import default_cache_dir
from backend.engine.types import (
    CheckpointEntry,
    ControlNetEntry,
    EngineConfig,
    Inventory,
    LoraInput,
)
from backend.engine.vae import VaeCache, choose_vae, missing_vae_sentence

log = logging.getLogger(__name__)

CONTROLNET_CACHE = 4
DEPTH_FOLDER = "depth"  # models_dir/depth/<folder>: a transformers depth model (DPT, ...)


class ModelManager:
    """Loads and caches models for the engine. Thread-safe; loading happens on the caller."""

    def __init__(self, config: EngineConfig) -> None:
        if config.cache_models < 1:
            raise InvalidRequest("cache_models", config.cache_models, "must be at least 1")
        self.config = config
        self._device = resolve_device(config.device)
        self._dtype = resolve_dtype(config.dtype, self._device)
        self.tiny_dir = Path(config.tiny_dir or default_cache_dir().parent / "tiny-models")
        budget = config.cache_budget_gb
        self.budget_bytes = int(budget * 1024**3) if budget else default_budget_bytes(self._device)
        self._lock = threading.RLock()  # loading and the model caches
        self._inventory_lock = threading.Lock()  # never held while loading
        self._loaded_snapshot: tuple[str, ...] = ()
        self._inventory: Inventory | None = None
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._controlnets: OrderedDict[str, Any] = OrderedDict()
        self._current: str | None = None
        self._signatures: dict[tuple[str, int], Signature | None] = {}
        self._depth: tuple[str, DepthEstimator] | None = None
        self._vaes = VaeCache(self._device, self._dtype)

    # -- facts ---------------------------------------------------------------------------

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> str:
        return str(self._dtype).replace("torch.", "")

    @property
    def torch_dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def loaded_names(self) -> list[str]:
        return list(self._loaded_snapshot)

    def inventory(self, refresh: bool = False) -> Inventory:
        with self._inventory_lock:
            if self._inventory is None or refresh:
                self._inventory = scan_models(
                    self.config.models_dir,
                    builtin_inventory(),
                    allow_pickle=self.config.allow_pickle,
                )
            return self._inventory

    def _find(self, kind: str, name: str, field: str = "model") -> Any:
        """The inventory entry ``name`` of ``kind``; one rescan before giving up."""
        check_model_name(name)
        for refresh in (False, True):
            entries = getattr(self.inventory(refresh=refresh), kind)
            for entry in entries:
                if entry.name == name:
                    return entry
        label = {"checkpoints": "checkpoint", "controlnets": "ControlNet", "loras": "LoRA"}
        raise ModelNotFound(
            f"No {label.get(kind, 'VAE')} named {name!r}. Put it in the models folder or pick "
            "one from the list.",
            field=field,
        )

    def _path(self, entry: Any) -> str:
        if entry.path.startswith(BUILTIN):
            name = entry.path[len(BUILTIN) :]
            return ensure_tiny_models(self.tiny_dir, [name])[name]
        return entry.path

    # -- checkpoints ---------------------------------------------------------------------

    def default_checkpoint_name(self) -> str:
        if self.config.default_model:
            return self.config.default_model
        checkpoints = self.inventory().checkpoints
        regular = [entry.name for entry in checkpoints if not entry.inpaint]
        return (regular or [entry.name for entry in checkpoints])[0]

    def checkpoint(self, name: str | None = None) -> LoadedModel:
        """The loaded model ``name`` (None = the default), loading it if needed (LRU cache)."""
        name = name or self.default_checkpoint_name()
        with self._lock:
            # 1. Cache hit: mark as most recently used.
            if name in self._models:
                self._models.move_to_end(name)
                self._current = name
                self._loaded_snapshot = tuple(self._models)
                return self._models[name]
            # 2. Make room: by count, and by the file's size against the budget.
            entry = self._find("checkpoints", name)
            path = self._path(entry)
            self._evict(keep=None, incoming=max(self.config.cache_models - 1, 0), extra=_size(path))
            # 3. Load (a file without a VAE gets its family's), then trim with the real size.
            loaded = load_checkpoint(
                path,
                device=self._device,
                dtype=self._dtype,
                allow_pickle=self.config.allow_pickle,
                name=name,
                vae=None if entry.has_vae else self._vae(entry, self._family_vae(entry)),
                models_dir=self.config.models_dir,
            )
            self._models[name] = loaded
            self._current = name
            self._evict(keep=name, incoming=self.config.cache_models, extra=0)
            self._loaded_snapshot = tuple(self._models)
            log.info("loaded %s (%s, %.1f MB)", name, loaded.family, loaded.approx_bytes / 1e6)
            return loaded

    def _vae(self, entry: CheckpointEntry, name: str | None) -> Any:
        """The loaded VAE ``name`` for ``entry``'s family (refusals name ``vae``)."""
        if name is None:
            raise InvalidRequest("vae", None, missing_vae_sentence(entry.name, entry.family))
        vae = self._find("vaes", name, field="vae")
        if vae.problem is not None:
            raise InvalidRequest("vae", name, vae.problem)
        return self._vaes.get(name, self._path(vae), entry.family)

    def _family_vae(self, entry: CheckpointEntry) -> str | None:
        return choose_vae(self.inventory(), entry, None, {})

    def use_vae(self, loaded: LoadedModel, requested: str | None) -> bool:
        """Put the job's VAE (or the model's default) into ``loaded``'s pipeline; True when
        it changed (task pipelines built with the old one must be rebuilt)."""
        with self._lock:
            entry = self._find("checkpoints", loaded.name)
            own = self._family_vae(entry)  # None, or the family VAE it was loaded with
            name = choose_vae(self.inventory(), entry, requested, self.config.model_vaes)
            name = None if name == own else name
            if name == loaded.vae_name:
                return False
            loaded.pipe.register_modules(vae=self._vae(entry, name) if name else loaded.own_vae)
            loaded.vae_name = name
            return True

    def _evict(self, keep: str | None, incoming: int, extra: int) -> None:
        """Drop least recently used models until at most ``incoming`` remain and the total
        (plus ``extra`` bytes about to be loaded) fits the budget. ``keep`` is never dropped."""

        def over() -> bool:
            total = sum(model.approx_bytes for model in self._models.values()) + extra
            return len(self._models) > incoming or total > self.budget_bytes

        while over():
            victims = [name for name in self._models if name != keep]
            if not victims:
                break
            self.unload(victims[0])

    def unload(self, name: str) -> None:
        """Free a loaded checkpoint (no error when it is not loaded)."""
        with self._lock:
            model = self._models.pop(name, None)
            if model is None:
                return
            if self._current == name:
                self._current = None
            self._loaded_snapshot = tuple(self._models)
            release_model(model.pipe)
            del model
            self._free_memory()
            log.info("unloaded %s", name)

    def _free_memory(self) -> None:
        gc.collect()
        if self._device.startswith("cuda"):
            torch.cuda.empty_cache()
        elif self._device == "mps":
            torch.mps.empty_cache()

    # -- ControlNets ---------------------------------------------------------------------

    def controlnet(self, name: str) -> Any:
        """The ControlNet ``name`` on the manager's device and dtype (cached, LRU of 4)."""
        with self._lock:
            if name in self._controlnets:
                self._controlnets.move_to_end(name)
                return self._controlnets[name]
            entry = self._find("controlnets", name)
            model = load_controlnet(
                self._path(entry),
                device=self._device,
                dtype=self._dtype,
                allow_pickle=self.config.allow_pickle,
                family=entry.family,
            )
            self._controlnets[name] = model
            while len(self._controlnets) > CONTROLNET_CACHE:
                self._controlnets.popitem(last=False)
                self._free_memory()
            return model

    def resolve_controlnet(
        self, family: str, control_type: str, name: str | None = None, field: str = "controls[0]"
    ) -> ControlNetEntry:
        """The ControlNet to use: ``name`` if given (must fit the model), else one of the
        family's with exactly ``control_type``, else one of type "any". A ControlNet fits when
        its architecture signature (first block channels, text width) matches the current
        model's UNet, wherever either file came from (built-in or models folder)."""
        wanted = self._current_signature(family)
        if name:
            entry = self._find("controlnets", name, field=f"{field}.model")
            if not families.fits(entry.family, family):
                raise InvalidRequest(
                    f"{field}.model",
                    name,
                    f"is a ControlNet for {families.label(entry.family)}; the model is "
                    f"{families.label(family)}",
                )
            found = self._controlnet_signature(entry)
            if wanted is not None and found is not None and found != wanted:
                raise InvalidRequest(
                    f"{field}.model",
                    name,
                    f"does not fit the model: the ControlNet has {found.describe()}, "
                    f"the model {wanted.describe()}",
                )
            return entry
        candidates = [
            entry
            for entry in self.inventory().controlnets
            if families.fits(entry.family, family) and self._fits(entry, wanted)
        ]
        for kind in (control_type, "any"):
            for entry in candidates:
                if entry.type == kind:
                    return entry
        hint = families.get(family).controlnet_hint.format(type=control_type)
        raise ModelNotFound(
            f"No {control_type} ControlNet for {family} that fits the model is installed: put "
            f"one in the controlnet/ folder ({hint}).",
            field=f"{field}.type",
        )

    def _current_signature(self, family: str) -> Signature | None:
        """The loaded model's UNet signature, when it is of ``family`` (else unknown)."""
        with self._lock:
            model = self._models.get(self._current) if self._current else None
            if model is None or model.family != family:
                return None
            unet = getattr(model.pipe, "unet", None)  # transformer families: no signature
            return None if unet is None else unet_signature(unet)

    def _controlnet_signature(self, entry: ControlNetEntry) -> Signature | None:
        """From the tiny config for a built-in; else from the file, cached by path and mtime."""
        if entry.path.startswith(BUILTIN):
            return signature_of_config(controlnet_config(entry.family))
        try:
            stamp = Path(entry.path).stat().st_mtime_ns
        except OSError:
            return None
        key = (entry.path, stamp)
        if key not in self._signatures:
            self._signatures[key] = controlnet_signature(entry.path)
        return self._signatures[key]

    def _fits(self, entry: ControlNetEntry, wanted: Signature | None) -> bool:
        """Unknown signatures (no model loaded, an unreadable file) fit on family alone."""
        found = self._controlnet_signature(entry)
        return wanted is None or found is None or found == wanted

    # -- depth estimation ----------------------------------------------------------------

    def depth_model_path(self) -> str | None:
        """The depth model folder in use: the first (by name) ``models_dir/depth/<folder>``
        holding a config.json, or None. Cheap (one folder listing): safe on any thread."""
        if not self.config.models_dir:
            return None
        root = Path(self.config.models_dir) / DEPTH_FOLDER
        try:
            folders = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        except OSError:
            return None
        found = [p for p in folders if (p / "config.json").is_file()]
        return str(found[0]) if found else None

    def depth_estimator(self) -> DepthEstimator | None:
        """The depth estimator of ``depth_model_path()`` (loaded once, local files only), or
        None when no depth model is installed. Raises ModelLoadError for a broken folder."""
        path = self.depth_model_path()
        if path is None:
            return None
        with self._lock:
            if self._depth is None or self._depth[0] != path:
                self._depth = None  # free the old one first
                estimator = load_depth_estimator(path, self._device)
                self._depth = (path, estimator)
                log.info("loaded the depth model %s", path)
            return self._depth[1]

    # -- LoRAs ---------------------------------------------------------------------------

    @contextmanager
    def loras_applied(self, loaded: LoadedModel, loras: list[LoraInput]) -> Iterator[None]:
        """Apply ``loras`` to ``loaded`` for the block; afterwards the weights are as before."""
        files: list[tuple[str, str, float]] = []
        for index, lora in enumerate(loras):
            entry = self._find("loras", lora.name, field=f"loras[{index}].name")
            if entry.problem is not None:
                raise InvalidRequest(f"loras[{index}].name", lora.name, entry.problem)
            if entry.family is not None and not families.fits(entry.family, loaded.family):
                raise InvalidRequest(
                    f"loras[{index}].name",
                    lora.name,
                    f"is a LoRA for {families.label(entry.family)}; the model {loaded.name!r} "
                    f"is {families.label(loaded.family)}",
                )
            if lora.weight != 0:
                files.append((self._path(entry), lora.name, float(lora.weight)))
        with apply_loras(loaded.pipe, files):
            yield


def _size(path: str) -> int:
    target = Path(path)
    if target.is_file():
        return target.stat().st_size
    if target.is_dir():
        return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return 0
