"""Diffusion Layers backend: the local generation server for the Krita plugin."""

from __future__ import annotations

__version__ = "0.1.0"
