"""The plugin's exception tree. ``str(error)`` is the sentence shown to the artist."""

from __future__ import annotations

from typing import Optional


class PluginError(Exception):
    """Base of every error the plugin reports in its docker."""


class NoDocument(PluginError):
    """No document is open (or the one a job belonged to was closed)."""


class UnsupportedDocument(PluginError):
    """A document Krita cannot give or take 8-bit sRGB pixels for (a colour conversion failed)."""


class SelectionOutsideCanvas(PluginError):
    """The selection has no selected pixel on the canvas: nothing to send."""


class ResultMismatch(PluginError):
    """A result (or live frame, or control map) that does not cover the region asked for."""


class CanvasChanged(PluginError):
    """The image was cropped, scaled or resized after a job was planned: its result is refused."""


class InvalidSetting(PluginError):
    """A setting or control entry that cannot be used; names the parameter and its value."""


class ControlLayerMissing(PluginError):
    """A control refers to a layer that is not in the document (deleted, or another document's)."""


class ControlLayerUnusable(PluginError):
    """A control's layer cannot give an image: a mask, hidden, or empty over the region."""


class LayerNotAdded(PluginError):
    """Krita did not take a preview or result layer where the plugin put it."""


class ConnectionFailed(PluginError):
    """The server did not answer (not running, wrong URL, timeout).

    ``reason``: ``refused`` (nothing listens), ``timeout`` or ``network`` (reset, dropped)."""

    def __init__(self, message: str, reason: str = "network") -> None:
        super().__init__(message)
        self.reason = reason


class BackendError(PluginError):
    """The server answered with an error (protocol ErrorResponse or a bad status)."""

    def __init__(
        self, message: str, code: str = "error", status: int = 0, field: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.field = field
        self.retry_after = 0.0  # seconds, from a 429/503 answer's Retry-After header


class ModelMissing(BackendError):
    """The server does not have the requested model."""


SERVE_HINT = "Start it with: diffusion-layers serve"


def server_down(url: str, detail: str, reason: str = "network") -> ConnectionFailed:
    return ConnectionFailed(f"Server not running at {url} ({detail}). {SERVE_HINT}", reason)
