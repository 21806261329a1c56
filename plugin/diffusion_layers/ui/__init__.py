"""QtWidgets for the docker; they talk to the Controller only (no krita here)."""

from __future__ import annotations
