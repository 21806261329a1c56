"""``python -m backend.bench.preflight SITE``: do the packages carried into SITE find what they need?

On the GPU image our wheels are installed with ``--no-deps --target SITE`` on top of the image's
own packages (install/gpu_bench.sh). This checks every requirement of every distribution in
SITE against what Python resolves now (SITE first on ``PYTHONPATH``, then the image), so a
package the image lacks, or has at a version we cannot use, is named in seconds instead of
failing every scenario minutes later. Prints one line per unmet requirement; exit code 1 if any.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

#: Carried only for a data file they hold (never imported): their own requirements don't count.
DATA_ONLY = frozenset({"open-clip-torch"})
#: Required on paper but never imported on the image's Python 3.12 (not carried).
NOT_IMPORTED = {"importlib-metadata": "diffusers imports it only on Python < 3.8"}


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def unmet_requirements(site: str | Path) -> list[str]:
    """One sentence per requirement of a distribution in ``site`` that is missing or too old."""
    from packaging.requirements import Requirement

    site = Path(site)
    if not site.is_dir():
        raise ValueError(f"site={str(site)!r}: no such folder")
    problems: list[str] = []
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if _normal(name) in DATA_ONLY:
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if _normal(requirement.name) in NOT_IMPORTED:
                continue
            try:
                have = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name} needs {requirement}: not installed")
                continue
            if not requirement.specifier.contains(have, prereleases=True):
                problems.append(f"{name} needs {requirement}: found {requirement.name} {have}")
    return sorted(set(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.bench.preflight")
    parser.add_argument("site", help="the folder the wheels were installed into (--target)")
    args = parser.parse_args(argv)
    try:
        problems = unmet_requirements(args.site)
    except ValueError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"preflight: {line}")
    print(f"preflight: {len(problems)} unmet requirement(s) in {args.site}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
