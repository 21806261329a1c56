"""Which device and dtype the models run on, and how much memory the model cache may use."""

from __future__ import annotations

import logging

import torch

from backend.engine.errors import InvalidRequest

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(requested: str) -> str:
    """ "auto" -> cuda if available, else mps, else cpu; explicit names are checked."""
    base = requested.split(":")[0]
    if base not in DEVICES:
        raise InvalidRequest("device", requested, f"expected one of {', '.join(DEVICES)}")
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise InvalidRequest("device", requested, "CUDA is not available on this machine")
    return requested


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    """ "auto" -> float16 on cuda/mps, float32 on cpu; explicit names are honoured."""
    if requested == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    if requested not in DTYPES:
        raise InvalidRequest("dtype", requested, f"expected auto or one of {', '.join(DTYPES)}")
    if device == "cpu" and requested != "float32":
        log.warning("dtype %s on the CPU is slow and some operations lack support", requested)
    return DTYPES[requested]


def default_budget_bytes(device: str) -> int:
    """Memory the checkpoint cache may use: 85% of the GPU, or half of the free RAM."""
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return int(torch.cuda.get_device_properties(index).total_memory * 0.85)
    import psutil

    return int(psutil.virtual_memory().available * 0.5)
