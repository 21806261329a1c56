"""Diffusion Layers: AI image generation for Krita, results as layers.

Krita imports this package at start-up; registration goes through krita_adapter.
"""

from __future__ import annotations

from .extension import register

register()
