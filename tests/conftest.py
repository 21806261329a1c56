"""Settings shared by every test tier."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Server subprocesses started by tests inherit this: torch's default thread pool spins
# against the other processes on the 2-core CI machines and makes tiny jobs take seconds.
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("DL_TEST_TORCH_THREADS", "1"))

try:
    import torch
except ImportError:  # the plugin tier runs without torch
    torch = None  # type: ignore[assignment]
else:
    torch.set_num_threads(int(os.environ.get("DL_TEST_TORCH_THREADS", "1")))
