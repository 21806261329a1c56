"""Connection to the server: health (with retries) then the model list, for the docker."""

from __future__ import annotations

from typing import Optional

from PyQt5.QtCore import QObject, pyqtSignal

from .client import Client
from .errors import PluginError
from .protocol import PROTOCOL_VERSION, Health, ModelsInfo


class Connection(QObject):
    changed = pyqtSignal()

    def __init__(self, client: Client, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.client = client
        self.state = "unknown"  # unknown | connecting | connected | error
        self.message = ""
        self.health: Optional[Health] = None
        self.models: Optional[ModelsInfo] = None

    def connect_server(self) -> None:
        self.state, self.message = "connecting", f"Connecting to {self.client.base_url}…"
        self.changed.emit()
        self.client.health(self._health_ok, self._failed)

    def _health_ok(self, health: Health) -> None:
        if health.protocol != PROTOCOL_VERSION:
            self._failed(
                PluginError(
                    f"The server speaks protocol v{health.protocol}; this plugin needs v{PROTOCOL_VERSION}."
                    " Update the plugin or the server."
                )
            )
            return
        self.health = health
        self.state = "connected"
        ready = "ready" if health.ready else health.status
        self.message = f"Connected: {health.device}, {health.model or 'no model loaded'} ({ready})"
        self.client.models(self._models_ok, self._failed)
        self.changed.emit()

    def _models_ok(self, models: ModelsInfo) -> None:
        self.models = models
        self.changed.emit()

    def _failed(self, error: PluginError) -> None:
        self.state, self.message = "error", str(error)
        self.changed.emit()
