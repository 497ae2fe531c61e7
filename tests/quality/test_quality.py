"""The code's own checks run with the tests: ruff (lint and format) and mypy --strict."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ["src", "tests", "bench", "tools", "openstack"]


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


# The layer rule (imports go downwards only, no cycles) is checked from the import graph in
# tests/quality/test_layers.py, with tools/layers.py.


def test_tests_can_fail() -> None:
    """An expected failure that passes is an error, and no test decides at run time that its
    failure is expected (it asserts what should happen, or skips for a stated reason)."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert options["ini_options"]["xfail_strict"] is True
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.xfail":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_lint_tools_are_pinned_to_what_runs() -> None:
    """Lint runs as a test, so the tools are pinned exactly, to the versions installed."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(r.split("==", 1) for r in extra["optional-dependencies"]["test"] if "==" in r)
    for name in ("ruff", "mypy"):
        assert name in pins, f"{name} is not pinned with == in the test extra"
        assert _run(_tool(name), "--version").stdout.split()[1] == pins[name], name
