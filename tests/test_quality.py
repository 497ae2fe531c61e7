"""The code's own checks run with the tests: ruff (lint and format) and mypy --strict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREES = ["src", "tests", "bench", "tools"]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    result = _run(_tool("ruff"), "check", *TREES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run(_tool("ruff"), "format", "--check", *TREES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict() -> None:
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_stay_apart() -> None:
    """idl imports nothing of ours; rpc knows no policy; backends never touch db or api."""
    rules = {
        "idl": ("xenstack.", "from .."),
        "rpc": ("..api", "..impl", "..db", "..toolstack"),
        "xenops": ("..db", "..api", "..impl"),
        "storage": ("..db", "..api", "..impl"),
    }
    for package, forbidden in rules.items():
        for path in (ROOT / "src" / "xenstack" / package).rglob("*.py"):
            imports = [
                line.strip()
                for line in path.read_text().splitlines()
                if line.strip().startswith(("import ", "from "))
            ]
            bad = [line for line in imports if any(f in line for f in forbidden)]
            assert not bad, f"{path.relative_to(ROOT)} crosses a layer: {bad}"
