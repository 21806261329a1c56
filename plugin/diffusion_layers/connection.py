"""Connection to the server for the docker: health, then the model list; reconnects by itself.

While the server cannot be reached and someone needs it (the docker is visible, or a job is
pending), ``GET /v1/health`` is probed again with exponential backoff (1 s, 2 s, 4 s … 30 s) on a
single-shot QTimer; the first answer refreshes the model list. Nothing ever blocks.
"""

from __future__ import annotations

import logging
from typing import Optional, Set

from .client import Client
from .errors import BackendError, PluginError
from .job_watch import backoff_ms
from .protocol import PROTOCOL_VERSION, Health, ModelsInfo
from .qt import QObject, QTimer, pyqtSignal

log = logging.getLogger(__name__)

RECONNECT_FIRST_MS = 1000
RECONNECT_MAX_MS = 30000


class Connection(QObject):
    changed = pyqtSignal()

    def __init__(self, client: Client, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.client = client
        self.state = "unknown"  # unknown | connecting | connected | error
        self.message = ""
        self.health: Optional[Health] = None
        self.models: Optional[ModelsInfo] = None
        self.auto_reconnect = True
        self.reconnect_first_ms = RECONNECT_FIRST_MS
        self.reconnect_max_ms = RECONNECT_MAX_MS
        self.attempts = 0  # failed probes since the last success
        self.next_retry_ms = 0  # delay of the scheduled probe (0: none scheduled)
        self._incompatible = False  # a protocol mismatch: retrying cannot help
        self._reasons: Set[str] = set()
        self._serial = 0  # answers to an older probe are ignored
        self._probing = False  # an automatic probe is in flight
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._probe)

    # -- public ---------------------------------------------------------------------------

    def connect_server(self) -> None:
        """Connect now (the Connect button, start-up); failures schedule automatic retries."""
        self._retry.stop()
        self.attempts, self.next_retry_ms, self._incompatible = 0, 0, False
        self.state, self.message = "connecting", f"Connecting to {self.client.base_url}…"
        self.changed.emit()
        self._check(retries=None)

    def want(self, reason: str, wanted: bool) -> None:
        """Someone needs (or no longer needs) the server: ``docker`` visible, ``job`` pending.

        Automatic reconnects only run while at least one reason holds."""
        if wanted:
            self._reasons.add(reason)
            self._schedule()
        else:
            self._reasons.discard(reason)
            if not self._reasons:
                self._retry.stop()
                self.next_retry_ms = 0

    @property
    def wanted(self) -> bool:
        return bool(self._reasons)

    @property
    def reconnecting(self) -> bool:
        """True while an automatic reconnect is scheduled or its probe is in flight."""
        return self._retry.isActive() or self._probing

    def lost(self, error: PluginError) -> None:
        """A request found the server gone: show it and start reconnecting."""
        if self.state == "connected":
            log.info("lost the server at %s: %s", self.client.base_url, error)
        self._failed(error)

    # -- probing --------------------------------------------------------------------------

    def _check(self, retries: Optional[int]) -> None:
        self._serial += 1
        serial = self._serial

        def ok(health: Health) -> None:
            if serial == self._serial:
                self._health_ok(health)

        def failed(error: PluginError) -> None:
            if serial == self._serial:
                self._failed(error)

        if retries is None:
            self.client.health(ok, failed)
        else:
            self.client.health(ok, failed, retries)

    def _probe(self) -> None:
        self.next_retry_ms = 0
        if self.state == "connected" or not self.wanted:
            return
        log.debug("probing %s (attempt %d)", self.client.base_url, self.attempts + 1)
        self._probing = True
        self._check(retries=0)

    def _schedule(self) -> None:
        if (
            not self.auto_reconnect
            or not self.wanted
            or self._incompatible
            or self.state != "error"
            or self._retry.isActive()
        ):
            return
        self.next_retry_ms = backoff_ms(
            max(self.attempts - 1, 0), self.reconnect_first_ms, self.reconnect_max_ms
        )
        self._retry.start(self.next_retry_ms)

    def _health_ok(self, health: Health) -> None:
        self._probing = False
        if health.protocol != PROTOCOL_VERSION:
            self._incompatible = True
            self._failed(
                PluginError(
                    f"The server speaks protocol v{health.protocol}; this plugin needs v{PROTOCOL_VERSION}."
                    " Update the plugin or the server."
                )
            )
            return
        if self.attempts:
            log.info("reconnected to %s after %d attempts", self.client.base_url, self.attempts)
        self._retry.stop()
        self.attempts, self.next_retry_ms = 0, 0
        self.health = health
        self.state = "connected"
        ready = "ready" if health.ready else health.status
        self.message = f"Connected: {health.device}, {health.model or 'no model loaded'} ({ready})"
        self.client.models(self._models_ok, self._models_failed)
        self.changed.emit()

    def _models_ok(self, models: ModelsInfo) -> None:
        self.models = models
        self.changed.emit()

    def _models_failed(self, error: PluginError) -> None:
        if isinstance(error, BackendError):
            self.state, self.message = "error", str(error)  # the server answered: not a drop
            self.changed.emit()
        else:
            self._failed(error)

    def _failed(self, error: PluginError) -> None:
        self._probing = False
        self.state = "error"
        self.attempts += 1
        self._schedule()
        seconds = round(self.next_retry_ms / 1000, 1)
        retry = f" Retrying in {seconds:g} s…" if self.reconnecting else ""
        self.message = f"{error}{retry}"
        self.changed.emit()
