"""The generation engine: pipelines, models and compositing. Knows nothing of HTTP."""

from __future__ import annotations
