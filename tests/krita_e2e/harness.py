"""Launch real Krita under Xvfb with our plugin and the test driver installed in a temp HOME.

One launch runs a list of driver scenarios (see ``driver/krita_e2e_driver/scenarios*.py``) and
returns the driver's JSON report. Krita and Xvfb always die with their process group.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backend_proc import REPO, kill_group

DRIVER = Path(__file__).resolve().parent / "driver"
DRIVER_NAME = "krita_e2e_driver"
PLUGIN_NAME = "diffusion_layers"
SCREEN = "-screen 0 1600x1000x24 -nolisten tcp"
PYTHON_DIR_MARKERS = ("/.pyenv/", "/.venv/", "/venv/", "/virtualenvs/", "/conda")


def artifacts_root() -> Path:
    return Path(os.environ.get("DL_ARTIFACTS") or REPO / "artifacts")


def clean_path(path: str) -> str:
    """PATH without venv/pyenv dirs: Krita's Python takes its home from the first ``python3``."""
    venv = os.environ.get("VIRTUAL_ENV")
    keep = []
    for entry in path.split(os.pathsep):
        real = entry.rstrip("/") + "/"
        if not entry or any(marker in real for marker in PYTHON_DIR_MARKERS):
            continue
        if venv and real.startswith(venv.rstrip("/") + "/"):
            continue
        if real.startswith(sys.prefix.rstrip("/") + "/") and sys.prefix != sys.base_prefix:
            continue
        keep.append(entry)
    return os.pathsep.join(keep or ["/usr/bin", "/bin"])


def find_krita() -> tuple[str | None, str | None, str]:
    """(krita, xvfb-run, why-not) looked up on the clean PATH Krita will run with."""
    path = clean_path(os.environ.get("PATH", "/usr/bin:/bin"))
    krita = shutil.which(os.environ.get("DL_KRITA") or "krita", path=path)
    xvfb = shutil.which("xvfb-run", path=path)
    missing = [name for name, exe in (("krita", krita), ("xvfb-run", xvfb)) if not exe]
    return krita, xvfb, ("not found on PATH: " + ", ".join(missing)) if missing else ""


def krita_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    drop = ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "QT_QPA_PLATFORM")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("XDG_")}
    env.update(
        HOME=str(home),
        PATH=clean_path(os.environ.get("PATH", "/usr/bin:/bin")),
        XDG_RUNTIME_DIR=str(home / "runtime"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        # A crash (segfault in Krita, called from Python) prints every thread's Python stack
        # into krita.log, so the report shows which plugin line was running.
        PYTHONFAULTHANDLER="1",
    )
    env.update(extra)
    return env


def make_home(home: Path) -> None:
    for sub in (".config", ".local/share/krita/pykrita", ".cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    runtime = home / "runtime"
    runtime.mkdir(exist_ok=True)
    runtime.chmod(0o700)


TEMPLATE_PATHS = (".local/share/krita", ".config/kritarc")


def seed_home(home: Path, template: Path) -> bool:
    """Start from a HOME where Krita already built its resource database (saves ~5-40 s)."""
    if not (template / ".local" / "share" / "krita" / "resourcecache.sqlite").exists():
        return False
    for rel in TEMPLATE_PATHS:
        source, target = template / rel, home / rel
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy2(source, target)
    return True


def save_template(home: Path, template: Path) -> None:
    """Keep a finished launch's Krita resources (not its plugins) for the next launches."""
    if (template / ".local" / "share" / "krita" / "resourcecache.sqlite").exists():
        return
    ignore = shutil.ignore_patterns("pykrita")
    shutil.copytree(home / ".local" / "share" / "krita", template / ".local" / "share" / "krita",
                    ignore=ignore, dirs_exist_ok=True)  # fmt: skip
    (template / ".config").mkdir(parents=True, exist_ok=True)
    shutil.copy2(home / ".config" / "kritarc", template / ".config" / "kritarc")


def install_plugins(home: Path) -> str:
    """Install our plugin the way a user does (the installer when it exists), then the driver."""
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    installer = REPO / "install" / "install_plugin.py"
    how = "copied plugin/diffusion_layers"
    if installer.exists():
        done = subprocess.run(
            [sys.executable, str(installer), "--home", str(home)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"install_plugin.py failed ({done.returncode}):\n{done.stderr}")
        how = "install/install_plugin.py"
    else:
        shutil.copytree(REPO / "plugin" / PLUGIN_NAME, pykrita / PLUGIN_NAME, dirs_exist_ok=True)
        desktop = REPO / "plugin" / f"{PLUGIN_NAME}.desktop"
        if desktop.exists():
            shutil.copy2(desktop, pykrita / desktop.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(DRIVER / DRIVER_NAME, pykrita / DRIVER_NAME, dirs_exist_ok=True, ignore=ignore)
    shutil.copy2(DRIVER / f"{DRIVER_NAME}.desktop", pykrita / f"{DRIVER_NAME}.desktop")
    return how


def merge_ini(text: str, values: dict[str, dict[str, str]]) -> str:
    """Set ``values[section][key]`` in KConfig text (which may start without a section)."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith("[") and line.rstrip().endswith("]"):
            current = line.strip()[1:-1]
            sections.setdefault(current, [])
        elif line.strip():
            sections[current].append(line)
    for section, pairs in values.items():
        lines = sections.setdefault(section, [])
        lines[:] = [ln for ln in lines if ln.split("=", 1)[0] not in pairs]
        lines += [f"{key}={value}" for key, value in pairs.items()]
    out = list(sections[""])
    for section, lines in sections.items():
        if section:
            out += ["", f"[{section}]", *lines]
    return "\n".join(out).lstrip("\n") + "\n"


def write_kritarc(home: Path, plugin_settings: dict[str, str]) -> None:
    """Enable both plugins and pre-set the plugin's settings; keeps what was there."""
    path = home / ".config" / "kritarc"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    enable = {f"enable_{PLUGIN_NAME}": "true", f"enable_{DRIVER_NAME}": "true"}
    path.write_text(merge_ini(text, {"python": enable, PLUGIN_NAME: plugin_settings}))
    # Software canvas: Xvfb has no GL worth using, and QWidget.grab can read it back.
    (home / ".config" / "kritadisplayrc").write_text("[General]\nOpenGLRenderer=none\n")


@dataclass
class KritaRun:
    label: str
    returncode: int | None
    seconds: float
    report: dict | None
    folder: Path
    log_path: Path
    timed_out: bool = False
    install: str = ""
    backend_log: Callable[[], str] | None = None
    handled: list[str] = field(default_factory=list)
    started_at: float = 0.0  # wall clock, to pick this launch's backend outputs
    ended_at: float = 0.0

    def scenario(self, name: str) -> dict:
        """The scenario's recorded data; fails (with both logs) when it did not run to the end."""
        if self.report is None:
            raise AssertionError(f"Krita wrote no report ({self.describe()})")
        entry = self.report.get("scenarios", {}).get(name)
        if entry is None:
            crash = f"\n{self.crash_report()}" if self.crashed else ""
            raise AssertionError(f"scenario {name!r} never finished ({self.describe()}){crash}")
        if not entry["ok"]:
            raise AssertionError(f"scenario {name!r} failed inside Krita:\n{entry['error']}")
        return entry["data"]

    @property
    def crashed(self) -> bool:
        """Krita died of a signal (segfault, abort) instead of quitting."""
        if self.timed_out:
            return False
        signal_exit = self.returncode is not None and (
            self.returncode < 0 or self.returncode in CRASH_EXIT_CODES
        )
        return signal_exit or any(mark in _tail(self.log_path, 200000) for mark in CRASH_MARKS)

    def crash_report(self) -> str:
        """The faulthandler output (Python stacks at the crash) from the Krita log."""
        text = _tail(self.log_path, 200000)
        starts = [text.find(mark) for mark in CRASH_MARKS if mark in text]
        return text[min(starts) :][:6000] if starts else "(no Python stack in the log)"

    def describe(self) -> str:
        phases = ""
        if self.report:
            setup = self.report.get("setup_wall", self.started_at) - self.started_at
            done = self.report.get("finished_wall")
            phases = f" (plugins loaded at {setup:.1f}s"
            phases += f", quit took {self.ended_at - done:.1f}s)" if done else ")"
        return (
            f"launch {self.label!r}: exit code {self.returncode}, {self.seconds:.1f}s{phases}"
            f"{', TIMED OUT and killed' if self.timed_out else ''}"
            f"{', KRITA CRASHED' if self.crashed else ''}; artifacts in {self.folder}"
        )

    def logs(self) -> str:
        text = [self.describe(), "----- Krita log (tail) -----", _tail(self.log_path)]
        if self.backend_log is not None:
            text += ["----- backend log (tail) -----", self.backend_log()]
        return "\n".join(text)


#: Exit codes of a process killed by SIGSEGV / SIGABRT as a shell (xvfb-run) reports them.
CRASH_EXIT_CODES = (128 + 11, 128 + 6)
CRASH_MARKS = ("Fatal Python error", "Segmentation fault")


def _tail(path: Path, chars: int = 12000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class ControlWatcher(threading.Thread):
    """Serves the driver's file requests (``<stem>.cmd`` -> ``<stem>.done``) while Krita runs."""

    def __init__(self, folder: Path, handler: Callable[[str], dict], handled: list[str]):
        super().__init__(daemon=True)
        self.folder, self.handler, self.handled = folder, handler, handled
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            for request in sorted(self.folder.glob("*.cmd")):
                command = json.loads(request.read_text())["command"]
                try:
                    result = {"ok": True, **self.handler(command)}
                except Exception as exc:  # noqa: BLE001 - reported back to the driver
                    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                self.handled.append(command)
                done = request.with_suffix(".done")
                done.with_suffix(".part").write_text(json.dumps(result))
                done.with_suffix(".part").replace(done)
                request.unlink()


def run_krita(
    label: str,
    scenarios: list[str],
    home: Path,
    plugin_settings: dict[str, str],
    timeout_s: float = 300.0,
    control: Callable[[str], dict] | None = None,
    backend_log: Callable[[], str] | None = None,
    template: Path | None = None,
) -> KritaRun:
    """Run one Krita launch through ``scenarios``; always kills Krita and Xvfb."""
    krita, xvfb, why = find_krita()
    if not krita or not xvfb:
        raise RuntimeError(why)
    # 1. A fresh HOME, artifacts folder and control folder.
    folder = artifacts_root() / "krita_e2e" / label
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    make_home(home)
    if template is not None:
        seed_home(home, template)
    control_dir = home / "control"
    control_dir.mkdir(exist_ok=True)
    # 2. Plugins and kritarc.
    install = install_plugins(home)
    write_kritarc(home, plugin_settings)
    # 3. Krita under Xvfb, in its own process group.
    report_path = folder / "report.json"
    env = krita_env(
        home,
        {
            "DL_E2E_SCENARIOS": ",".join(scenarios),
            "DL_E2E_REPORT": str(report_path),
            "DL_E2E_ARTIFACTS": str(folder),
            "DL_E2E_CONTROL": str(control_dir),
        },
    )
    log_path = folder / "krita.log"
    handled: list[str] = []
    watcher = ControlWatcher(control_dir, control or _no_control, handled)
    watcher.start()
    started = time.monotonic()
    started_at = time.time()
    timed_out = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [xvfb, "-a", "-s", SCREEN, krita, "--nosplash"],
            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_group(proc, grace_s=3.0)
            watcher.stop_event.set()
            watcher.join(timeout=5)
    # 4. The driver's report; a clean run's resources seed the next launches.
    report = None
    if report_path.exists():
        report = json.loads(report_path.read_text())
    if template is not None and proc.returncode == 0 and report and report.get("finished"):
        save_template(home, template)
    return KritaRun(
        label=label,
        returncode=proc.returncode,
        seconds=time.monotonic() - started,
        report=report,
        folder=folder,
        log_path=log_path,
        timed_out=timed_out,
        install=install,
        backend_log=backend_log,
        handled=handled,
        started_at=started_at,
        ended_at=time.time(),
    )


def _no_control(command: str) -> dict:
    raise RuntimeError(f"this launch serves no harness commands (asked: {command})")
