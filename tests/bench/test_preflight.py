"""The GPU run's preflight (backend/bench/preflight.py) on real distribution metadata."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from backend.bench.preflight import unmet_requirements


def _dist(site, name: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_preflight_names_missing_and_too_old_requirements(tmp_path) -> None:
    _dist(
        tmp_path,
        "carried-pkg",
        "numpy>=1.0",  # met by the running environment
        f"numpy>{np.__version__}",  # too old here
        "surely-not-installed-xyz>=2",  # missing
        'also-missing-abc; extra == "dev"',  # an extra: not needed
        'old-only-def; python_version < "3"',  # a marker that is false here
        "importlib_metadata",  # required on paper, never imported on Python 3.12
    )
    _dist(tmp_path, "open-clip-torch", "ftfy-not-installed")  # carried for a data file only
    assert unmet_requirements(tmp_path) == [
        f"carried-pkg needs numpy>{np.__version__}: found numpy {np.__version__}",
        "carried-pkg needs surely-not-installed-xyz>=2: not installed",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "backend.bench.preflight", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "surely-not-installed-xyz" in run.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "backend.bench.preflight", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "site=" in missing.stderr
