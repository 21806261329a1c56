"""Start-up: register the plugin — or, when it cannot run here, a docker that says why.

Krita imports the package at start-up and ``__init__`` calls :func:`start`. When this Krita is
older than 5.1 or its Qt binding cannot be used (``qt.py`` raises ``QtBindingError``), the
artist gets the "Diffusion Layers" docker with one sentence saying so, and the log gets that
sentence on one line (the traceback only at debug level) — not a greyed-out plugin and a
traceback storm.

This module imports only the standard library and ``krita`` — never ``qt.py`` — so it works
exactly when the binding does not. The notice is built from the Qt classes Krita itself
re-exports through its ``krita`` module (``krita.QLabel``), whatever binding Krita was built
with.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Optional, Tuple

import krita

log = logging.getLogger(__name__)

DOCKER_ID = "diffusion_layers_docker"
DOCKER_TITLE = "Diffusion Layers"
MIN_KRITA = (5, 1)
MIN_PYTHON = (3, 8)


def parse_version(text: str) -> Optional[Tuple[int, int]]:
    """``"5.1.5"``, ``"5.3.0-prealpha (git 1a2b3c)"``, ``"6.0.1"`` → (major, minor); None when
    the text holds no version."""
    match = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def krita_problem(version: str, python: Tuple[int, int]) -> Optional[str]:
    """The sentence for the artist when this Krita cannot run the plugin, else None."""
    found = parse_version(version)
    if found is not None and found < MIN_KRITA:
        return (
            f"Diffusion Layers needs Krita {MIN_KRITA[0]}.{MIN_KRITA[1]} or newer, but this is"
            f" Krita {version.strip()}: please update Krita."
        )
    if tuple(python) < MIN_PYTHON:
        return (
            f"Diffusion Layers needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer inside"
            f" Krita, but this Krita runs Python {python[0]}.{python[1]}: please update Krita."
        )
    return None


def load_problem(error: BaseException) -> str:
    """The sentence for the artist when the plugin's modules cannot be imported."""
    if type(error).__name__ == "QtBindingError":
        return str(error)  # qt.py already wrote it for the artist
    return (
        f"Diffusion Layers could not start ({type(error).__name__}: {error}); reinstall the"
        " plugin, and report this if it persists."
    )


def start() -> None:
    """Register the extension and docker, or the notice docker when that cannot work."""
    problem = krita_problem(krita.Krita.instance().version(), sys.version_info[:2])
    if problem is None:
        try:
            from .extension import register
        except (ImportError, RuntimeError) as exc:  # RuntimeError: a sip/Qt mismatch
            log.debug("Diffusion Layers failed to import", exc_info=True)
            problem = load_problem(exc)
        else:
            register()
            return
    log.warning("%s", problem)
    register_notice(problem)


def register_notice(message: str) -> None:
    """A docker with id :data:`DOCKER_ID` that shows ``message`` and nothing else."""
    label_class: Any = getattr(krita, "QLabel", None)
    qt: Any = getattr(krita, "Qt", None)

    class DiffusionLayersNotice(krita.DockWidget):
        notice = message

        def __init__(self) -> None:
            super().__init__()
            self.setWindowTitle(DOCKER_TITLE)
            self.setToolTip(message)
            if label_class is not None:
                label = label_class(message)
                label.setWordWrap(True)
                if qt is not None:  # at the top, under the docker's title
                    label.setAlignment(qt.AlignmentFlag.AlignTop | qt.AlignmentFlag.AlignLeft)
                self.setWidget(label)

        def canvasChanged(self, canvas: Any) -> None:
            pass

    # Scoped, as Krita 6 requires; a Krita too old to scope its enums still gets the notice.
    base: Any = krita.DockWidgetFactoryBase
    position = getattr(base, "DockPosition", base).DockRight
    krita.Krita.instance().addDockWidgetFactory(
        krita.DockWidgetFactory(DOCKER_ID, position, DiffusionLayersNotice)
    )
