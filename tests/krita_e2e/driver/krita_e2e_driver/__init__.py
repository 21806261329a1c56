"""Test-only Krita plugin that drives Diffusion Layers through Krita's own API.

It does nothing unless the harness sets ``DL_E2E_SCENARIOS`` (comma-separated scenario names)
and ``DL_E2E_REPORT`` (where the JSON report goes) in Krita's environment.
"""

from __future__ import annotations

from krita import Krita

from .extension import DriverExtension

Krita.instance().addExtension(DriverExtension(Krita.instance()))
