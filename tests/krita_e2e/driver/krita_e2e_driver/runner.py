"""Runs scenario generators one after another from a QTimer; never blocks Krita's event loop.

Writes the JSON report after every scenario (so a hard kill still leaves what was measured),
closes every document unmodified, then triggers ``file_quit``.
"""

from __future__ import annotations

import json
import os
import time
import traceback

from krita import Krita
from PyQt5.QtCore import Qt, QTimer

from .context import Context, Wait
from .scenarios import SCENARIOS

POLL_MS = 50
#: Dockers kept visible (the rest are hidden so that screenshots show ours at a useful size).
KEEP_DOCKERS = ("KisLayerBox", "diffusion_layers_docker")


def tidy_window() -> None:
    """Fill the Xvfb screen (no window manager to maximize) and show our docker roomily."""
    app = Krita.instance()
    window = app.activeWindow()
    if window is None:
        return
    qwindow = window.qwindow()
    screen = qwindow.screen().availableGeometry()
    qwindow.setGeometry(screen)
    kept = []
    for dock in app.dockers():
        if dock.objectName() in KEEP_DOCKERS:
            dock.show()
            kept.append(dock)
        elif dock.isVisible():
            dock.hide()
    if len(kept) == 2:
        layers, ours = sorted(kept, key=lambda d: d.objectName() != "KisLayerBox")
        qwindow.resizeDocks([layers, ours], [screen.height() // 4, screen.height()], Qt.Vertical)
        qwindow.resizeDocks([ours], [440], Qt.Horizontal)


class ScenarioRunner:
    def __init__(self, names: list[str], report_path: str, artifacts_dir: str, control_dir: str):
        self.names = list(names)
        self.report_path = report_path
        self.artifacts_dir = artifacts_dir
        self.control_dir = control_dir
        self.started = False
        self.report: dict = {
            "scenarios": {},
            "log": [],
            "finished": False,
            "setup_wall": time.time(),
        }
        self._timer = QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._gen = None
        self._ctx: Context | None = None
        self._wait: Wait | None = None
        self._wait_deadline = 0.0
        self._scenario_start = 0.0
        self._t0 = time.monotonic()

    # 1. Lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.started = True
        os.makedirs(self.artifacts_dir, exist_ok=True)
        tidy_window()
        self.log(f"driver started; scenarios: {self.names}")
        self._next_scenario()

    def log(self, message: str) -> None:
        line = f"{time.monotonic() - self._t0:7.2f}s {message}"
        self.report["log"].append(line)
        print(f"[krita_e2e_driver] {line}", flush=True)

    def _next_scenario(self) -> None:
        if not self.names:
            self._quit()
            return
        name = self.names.pop(0)
        self.log(f"scenario {name}: start")
        self._ctx = Context(name, self.artifacts_dir, self.control_dir, self.log)
        self._scenario_start = time.monotonic()
        factory = SCENARIOS.get(name)
        if factory is None:
            self._finish(f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}")
            return
        try:
            self._gen = factory(self._ctx)
        except Exception:  # noqa: BLE001 - any failure is recorded in the report
            self._finish(traceback.format_exc())
            return
        self._advance(None)

    # 2. Stepping the generator -----------------------------------------------------------

    def _advance(self, value) -> None:
        try:
            wait = self._gen.send(value)
        except StopIteration:
            self._finish(None)
            return
        except Exception:  # noqa: BLE001 - recorded, then the next scenario runs
            self._finish(traceback.format_exc())
            return
        if not isinstance(wait, Wait):
            self._finish(f"scenario yielded {wait!r}, expected a Wait")
            return
        self._wait = wait
        self._wait_deadline = time.monotonic() + wait.timeout_s
        self._timer.start()

    def _poll(self) -> None:
        wait = self._wait
        if wait is None:
            self._timer.stop()
            return
        try:
            result = wait.predicate()
        except Exception:  # noqa: BLE001
            self._timer.stop()
            self._wait = None
            self._finish(traceback.format_exc())
            return
        if result:
            self._timer.stop()
            self._wait = None
            self._advance(result)
        elif time.monotonic() > self._wait_deadline:
            self._timer.stop()
            self._wait = None
            ctx = self._ctx
            state = ctx.state() if ctx else None
            error = ctx.last_error() if ctx else None
            self._gen.close()
            self._finish(
                f"timed out after {wait.timeout_s}s waiting for {wait.what} "
                f"(plugin state={state!r}, last_error={error!r})"
            )

    def _finish(self, error: str | None) -> None:
        ctx = self._ctx
        name = ctx.name if ctx else "?"
        self.log(f"scenario {name}: {'ok' if error is None else 'FAILED'}")
        if error:
            self.log(error)
        self.report["scenarios"][name] = {
            "ok": error is None,
            "error": error,
            "seconds": round(time.monotonic() - self._scenario_start, 2),
            "data": ctx.data if ctx else {},
        }
        if ctx is not None:
            try:
                ctx.close_all()
            except Exception:  # noqa: BLE001
                self.log("closing documents failed:\n" + traceback.format_exc())
        self._write()
        self._gen = None
        QTimer.singleShot(300, self._next_scenario)

    # 3. Report and quit ------------------------------------------------------------------

    def _write(self) -> None:
        tmp = self.report_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.report, handle, indent=1, default=str)
        os.replace(tmp, self.report_path)

    def _quit(self) -> None:
        self.report["finished"] = True
        self.report["finished_wall"] = time.time()
        self.log("all scenarios done; quitting")
        self._write()
        app = Krita.instance()
        for doc in list(app.documents()):
            doc.setBatchmode(True)
            doc.setModified(False)
            doc.close()
        app.action("file_quit").trigger()
