"""The shell entry points: syntax, options, tier bookkeeping and the torch choice in lib.sh."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["install/run.sh", "install/test.sh", "install/lib.sh", "install/tiers.sh", ".ci/run"]


def bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_fail_loudly(script):
    text = (REPO / script).read_text()
    assert subprocess.run(["bash", "-n", str(REPO / script)], check=False).returncode == 0
    if not script.endswith(("lib.sh", "tiers.sh")):
        assert "set -euo pipefail" in text
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"


def test_ci_runs_exactly_the_readme_test_command_with_krita_required():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert "install/run.sh\n" in blocks and "install/test.sh\n" in blocks
    assert "export DL_REQUIRE_KRITA=1" in ci
    assert re.search(r"^exec bash install/test\.sh$", ci, re.M)


def test_run_sh_help_and_bad_option_touch_nothing(tmp_path):
    shown = bash("install/run.sh --help", {"DL_VENV": str(tmp_path / "venv")})
    bad = bash("install/run.sh --frobnicate", {"DL_VENV": str(tmp_path / "venv")})

    assert shown.returncode == 0 and "--model NAME" in shown.stdout and "tiny" in shown.stdout
    assert bad.returncode == 2 and "unknown option '--frobnicate'" in bad.stderr
    assert not (tmp_path / "venv").exists()


def run_tiers(commands: str) -> subprocess.CompletedProcess[str]:
    return bash(
        f"set -euo pipefail; DL_VENV=/nowhere; . install/tiers.sh; {commands}; print_summary"
    )


def test_tier_summary_fails_on_a_failing_tier_and_on_no_tests():
    passing = run_tiers("run_tier ok 0 true")
    failing = run_tiers("run_tier ok 0 true; run_tier broken 0 bash -c 'exit 3'")
    empty = run_tiers("run_tier fast 0 bash -c 'exit 5'")
    optional_empty = run_tiers("run_tier slow 1 bash -c 'exit 5'")

    assert passing.returncode == 0 and "RESULT: OK" in passing.stdout
    assert failing.returncode == 1
    assert re.search(r"^  broken +FAIL \(exit 3\)$", failing.stdout, re.MULTILINE), failing.stdout
    assert empty.returncode == 1 and "FAIL (pytest collected no tests: exit 5)" in empty.stdout
    assert optional_empty.returncode == 0 and "NO TESTS" in optional_empty.stdout


def test_clean_path_drops_venvs_and_pyenv():
    done = bash(
        ". install/tiers.sh; clean_path",
        {"DL_VENV": "/repo/.venv", "PATH": "/repo/.venv/bin:/root/.pyenv/shims:/usr/bin:/bin"},
    )
    assert done.stdout == "/usr/bin:/bin"


@pytest.fixture
def fake_env(tmp_path):
    """A fake venv python that records pip calls, and a bin folder for a fake nvidia-smi."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\n[ "$1" = "-m" ] && echo "$*" >> {log}\nexit 0\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "uname", "cat", "sha256sum", "cut", "dirname"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    return venv, log, bin_dir


def choose_torch(fake_env, tmp_path, gpu: bool, local_wheel: bool) -> str:
    venv, log, bin_dir = fake_env
    if gpu:
        smi = bin_dir / "nvidia-smi"
        smi.write_text("#!/bin/sh\necho 'GPU 0: Fake'\n")
        smi.chmod(0o755)
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    if local_wheel:
        (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    done = bash(
        ". install/lib.sh; dl_install_torch auto",
        {"DL_VENV": str(venv), "PATH": str(bin_dir), "PIP_FIND_LINKS": str(wheels)},
    )
    assert done.returncode == 0, done.stderr
    return done.stderr + "\n" + log.read_text()


def test_gpu_machine_gets_the_cuda_build(fake_env, tmp_path):
    out = choose_torch(fake_env, tmp_path, gpu=True, local_wheel=False)
    assert "CUDA build" in out
    assert "-m pip install --disable-pip-version-check torch==2.13.0\n" in out


def test_cpu_machine_with_the_local_wheel_pins_torch(fake_env, tmp_path):
    out = choose_torch(fake_env, tmp_path, gpu=False, local_wheel=True)
    assert "CPU build" in out and "local wheel" in out
    assert "-m pip install --disable-pip-version-check torch==2.13.0\n" in out


def test_cpu_machine_without_it_uses_the_cpu_index(fake_env, tmp_path):
    out = choose_torch(fake_env, tmp_path, gpu=False, local_wheel=False)
    assert "CPU build" in out
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in out
