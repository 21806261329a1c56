"""Wiring only: the Krita actions (fixed ids, public interface) and the docker."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from .client import Client
from .controller import Controller
from .krita_adapter import (
    DockWidget,
    Extension,
    KritaCanvas,
    KritaSettingsStore,
    find_extension,
    on_document_opened,
)
from .krita_adapter import register as register_with_krita
from .qt import QKeySequence, QTimer
from .settings import PluginSettings, installation_id
from .startup import DOCKER_ID, DOCKER_TITLE
from .ui.docker import DockerPanel

MENU = "tools/scripts/diffusion_layers"

#: (action id, text, default shortcut, controller method) — ids are public interface.
ACTIONS: Tuple[Tuple[str, str, str, str], ...] = (
    ("diffusion_layers_generate", "Diffusion Layers: Generate", "Ctrl+Alt+G", "generate"),
    ("diffusion_layers_cancel", "Diffusion Layers: Cancel", "Ctrl+Alt+X", "cancel"),
    ("diffusion_layers_apply", "Diffusion Layers: Apply result", "Ctrl+Alt+A", "apply"),
    (
        "diffusion_layers_apply_all",
        "Diffusion Layers: Apply all results",
        "Ctrl+Alt+Shift+A",
        "apply_all",
    ),
    (
        "diffusion_layers_toggle_live",
        "Diffusion Layers: Toggle live mode",
        "Ctrl+Alt+L",
        "toggle_live",
    ),
    ("diffusion_layers_upscale", "Upscale / Refine detail", "Ctrl+Alt+U", "upscale.start"),
    (
        "diffusion_layers_decompose",
        "Decompose into Layers",
        "Ctrl+Alt+Shift+D",
        "decompose.start",
    ),
)


class PluginApp:
    """Shared by the extension and every docker: builds the controller on first use."""

    def __init__(self) -> None:
        self._controller: Optional[Controller] = None

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            store = KritaSettingsStore()
            settings = PluginSettings.load(store)
            client = Client(settings.server_url, settings.token, client_id=installation_id(store))
            self._controller = Controller(KritaCanvas(), client, store)
        return self._controller


class DiffusionLayersExtension(Extension):
    def __init__(self, parent: Any, app: PluginApp) -> None:
        super().__init__(parent)
        self.app = app
        self._runners: List[Callable[..., None]] = []  # strong references to the slots

    def setup(self) -> None:
        # A document opened from a file may hold a [Preview]/[Live] layer saved with it.
        on_document_opened(lambda key: QTimer.singleShot(0, lambda: self.app.controller.tidy(key)))

    def createActions(self, window: Any) -> None:
        for action_id, text, shortcut, method in ACTIONS:
            action = window.createAction(action_id, text, MENU)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(self._runner(method))

    def _runner(self, method: str) -> Callable[..., None]:
        def run(*_args: Any) -> None:  # "upscale.start": controller.upscale.start()
            target: Any = self.app.controller
            for name in method.split("."):
                target = getattr(target, name)
            target()

        self._runners.append(run)
        return run


def make_docker_class(app: PluginApp) -> type:
    class DiffusionLayersDocker(DockWidget):
        def __init__(self) -> None:
            super().__init__()
            self.setWindowTitle(DOCKER_TITLE)
            self.panel = DockerPanel(app.controller)
            self.setWidget(self.panel)
            # Not synchronously: a reply handled while Krita is still building its window
            # (KisApplication::start) crashes Krita in the Python slot (seen in tests/krita_e2e).
            QTimer.singleShot(0, app.controller.connect_server)

        def canvasChanged(self, canvas: Any) -> None:
            # Krita calls this while a view (and maybe its document) is being closed: reading
            # that document now can crash Krita, so refresh once the close has finished.
            QTimer.singleShot(0, self.panel.refresh)

    return DiffusionLayersDocker


def register() -> None:
    app = PluginApp()
    register_with_krita(
        lambda krita: DiffusionLayersExtension(krita, app), DOCKER_ID, make_docker_class(app)
    )


def controller() -> Optional[Controller]:
    """The running plugin's controller (for end-to-end tests and scripting), if registered."""
    extension = find_extension(DiffusionLayersExtension)
    return None if extension is None else extension.app.controller
