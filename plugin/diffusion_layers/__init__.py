"""Diffusion Layers: AI image generation for Krita, results as layers.

Krita imports this package at start-up. ``startup.start`` registers the plugin through
krita_adapter, or — when this Krita is too old or its Qt binding is unusable — a docker that
says so in one sentence.
"""

from __future__ import annotations

from .startup import start

start()
