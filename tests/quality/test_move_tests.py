"""The tests stay laid out as tools/move_tests.py's table says, and its rewrites are exact."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("move_tests", ROOT / "tools" / "move_tests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_tests_are_where_the_table_puts_them() -> None:
    """Nothing is left to move, and no test file at the top of tests/ lacks a place."""
    script = _script()
    assert script.plan_moves() == []
    assert script.unplaced() == [], "give each a row in tools/move_tests.py's TABLE"


def test_a_moved_file_computes_the_same_paths() -> None:
    fix = _script().fix_file_paths
    rows = [("tests/test_a.py", "tests/quality/test_a.py")]
    root = "ROOT = Path(__file__).resolve().parent.parent\n"
    assert fix(root, "tests/test_a.py", "tests/quality/test_a.py", rows) == (
        "ROOT = Path(__file__).resolve().parents[2]\n"
    )
    src = 'X = Path(__file__).parents[1] / "src" / "x.py"\n'
    assert fix(src, "tests/test_a.py", "tests/quality/test_a.py", rows) == (
        'X = Path(__file__).parents[2] / "src" / "x.py"\n'
    )
    near = 'D = Path(__file__).parent / "clients" / "ansible"\n'
    assert fix(near, "tests/test_a.py", "tests/clients/test_a.py", rows) == (
        'D = Path(__file__).parent / "ansible"\n'
    )


def test_an_unmoved_file_follows_its_moved_data_and_is_otherwise_untouched() -> None:
    fix = _script().fix_file_paths
    golden = 'GOLDEN = Path(__file__).parent / "golden" / "xe"\n'
    rows = [("tests/golden", "tests/cli/golden")]
    assert fix(golden, "tests/xekit.py", "tests/xekit.py", rows) == (
        'GOLDEN = Path(__file__).parent / "cli" / "golden" / "xe"\n'
    )
    assert fix(golden, "tests/xekit.py", "tests/xekit.py", []) == golden
    root = "ROOT = Path(__file__).resolve().parent.parent\n"
    assert fix(root, "tests/q/test_b.py", "tests/q/test_b.py", rows) == root


def test_a_mention_matches_the_whole_path_only() -> None:
    pattern = _script().mention("tests/test_vm_lifecycle.py")
    assert pattern.sub("NEW", "see tests/test_vm_lifecycle.py::test_x.") == "see NEW::test_x."
    for other in (
        "tests/test_vm_lifecycle.pyc",
        "xtests/test_vm_lifecycle.py",
        "a/tests/test_vm_lifecycle.py",
    ):
        assert pattern.sub("NEW", other) == other
