"""Outside ``backend/engine/families/`` no code branches on a family name: what differs per
family is a field of its ``Family`` (docs/engine.md, "Adding a family").

A branch is a family id compared (``==``, ``!=``, ``in (...)``, ``startswith``), used as a
mapping key, or matched in a ``case``. Records that merely carry an id as data
(``family="sd15"`` in the catalog, a default argument) are allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

from backend.engine import families

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "backend", ROOT / "plugin" / "diffusion_layers"]
FAMILIES_DIR = ROOT / "backend" / "engine" / "families"


def _branch_patterns(ids: tuple[str, ...]) -> list[re.Pattern[str]]:
    alternatives = "|".join(re.escape(i) for i in ids)
    literal = r"""["'](?:""" + alternatives + r""")["']"""
    return [
        re.compile(r"(?:==|!=)\s*" + literal),
        re.compile(literal + r"\s*(?:==|!=)"),
        re.compile(r"\bin\s*[\(\[\{][^)\]\}]*" + literal),
        re.compile(literal + r"\s*:(?!\s*$)"),  # a dict key (not a slice or an annotation)
        re.compile(r"startswith\(\s*" + literal),
        re.compile(r"^\s*case\s+" + literal),
        re.compile(r"\.get\(\s*" + literal),
    ]


def _offences(ids: tuple[str, ...]) -> list[str]:
    patterns = _branch_patterns(ids)
    found = []
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            if FAMILIES_DIR in path.parents:
                continue
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if any(pattern.search(code) for pattern in patterns):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_code_outside_families_branches_on_a_family_name() -> None:
    offences = _offences(families.ids())
    assert not offences, "family-specific code outside families/:\n" + "\n".join(offences)


def test_the_check_finds_branches() -> None:
    """The patterns catch the usual ways of branching (so the test above can fail)."""
    patterns = _branch_patterns(("sdxl",))
    branches = [
        'if family == "sdxl":',
        "if 'sdxl' != kind.family:",
        'if family in ("sd15", "sdxl"):',
        'HINTS = {"sdxl": "x"}',
        'if version.startswith("sdxl"):',
        '    case "sdxl":',
        'LABELS.get("sdxl")',
    ]
    data = ['CatalogEntry(family="sdxl")', 'def f(family: str = "sdxl") -> None:']
    assert all(any(p.search(line) for p in patterns) for line in branches)
    assert not any(any(p.search(line) for p in patterns) for line in data)
