"""The layers import downwards only, and no modules import each other (tools/layers.py).

The real tree is checked against the violations listed here, and the lists are empty: the tree
has no upward import and no cycle. They stay as the place to name one that cannot be cut at
once (with why); a violation not in them fails, and so does an entry that no longer occurs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _layers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers", ROOT / "tools" / "layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("layers", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


layers = _layers()

# (importer, imported) under xenstack: imports of a higher layer let through (none)
UPWARD: set[tuple[str, str]] = set()

# strongly connected components let through: modules that import each other (none)
CYCLES: set[tuple[str, ...]] = set()


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


SYNTHETIC_LAYERS = (("api",), ("impl",), ("db", "storage"), ("", "core"))

CLEAN = {
    "pkg/__init__.py": "",
    "pkg/api/__init__.py": "from ..impl import vm\n",
    "pkg/impl/__init__.py": "",
    "pkg/impl/vm.py": "from ..db import store\nimport pkg.storage.vhd\n",
    "pkg/db/__init__.py": "",
    "pkg/db/store.py": "from .. import core\n",
    "pkg/storage/__init__.py": "",
    "pkg/storage/vhd.py": "from pkg.core import thing\n",
    "pkg/core.py": "thing = 1\n",
}


def test_a_downward_package_passes(tmp_path: Path) -> None:
    root = _write(tmp_path, CLEAN)
    graph = layers.build(root)
    assert set(graph.edges["pkg.impl.vm"]) == {"pkg.db.store", "pkg.storage.vhd"}
    assert set(graph.edges["pkg.db.store"]) == {"pkg.core"}
    assert layers.check(root, SYNTHETIC_LAYERS, {}) == []


@pytest.mark.parametrize("where", ["top", "type_checking", "function"])
def test_an_upward_import_fails_naming_file_and_line(tmp_path: Path, where: str) -> None:
    statement = "from ..api import context"
    text = {
        "top": f"{statement}\n",
        "type_checking": f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {statement}\n",
        "function": f"def f() -> None:\n    {statement}\n",
    }[where]
    line = len(text.splitlines())  # the import is the last line
    files = dict(CLEAN, **{"pkg/api/context.py": "", "pkg/db/bad.py": text})
    found = layers.check(_write(tmp_path, files), SYNTHETIC_LAYERS, {})
    assert [(v.kind, v.key) for v in found] == [("upward", ("pkg.db.bad", "pkg.api.context"))]
    assert [str(s) for s in found[0].sites] == [f"pkg/db/bad.py:{line}"]


def test_a_peer_a_layer_kept_apart_and_an_unplaced_package_fail(tmp_path: Path) -> None:
    files = dict(CLEAN, **{"pkg/db/peer.py": "from ..storage import vhd\n", "pkg/odd.py": ""})
    files["pkg/core.py"] = "from . import odd\n"
    files["pkg/api/__init__.py"] += "from ..db import store\n"
    found = layers.check(_write(tmp_path, files), SYNTHETIC_LAYERS, {"api": ("db",)})
    assert [(v.kind, v.key) for v in found] == [
        ("apart", ("pkg.api", "pkg.db.store")),
        ("unplaced", ("pkg.core", "pkg.odd")),
        ("sideways", ("pkg.db.peer", "pkg.storage.vhd")),
    ]


def test_a_cycle_fails_naming_every_import_in_it(tmp_path: Path) -> None:
    files = dict(CLEAN)
    files["pkg/impl/a.py"] = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
    )
    files["pkg/impl/b.py"] = "def f() -> None:\n    from .c import g\n"
    files["pkg/impl/c.py"] = "import pkg.impl.a\ng = 1\n"
    found = layers.check(_write(tmp_path, files), SYNTHETIC_LAYERS, {})
    assert [(v.kind, v.key) for v in found] == [
        ("cycle", ("pkg.impl.a", "pkg.impl.b", "pkg.impl.c"))
    ]
    sites = [str(s) for s in found[0].sites]
    assert sites == ["pkg/impl/a.py:3", "pkg/impl/b.py:2", "pkg/impl/c.py:1"]
    assert "pkg/impl/b.py:2" in str(found[0])


def _full(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(f"xenstack.{n}" for n in names))


def test_the_tree_has_no_new_violation_and_no_stale_entry() -> None:
    found = layers.check(ROOT / "src" / "xenstack")
    assert not [str(v) for v in found if v.kind in ("apart", "sideways", "unplaced")]
    upward = {v.key: v for v in found if v.kind == "upward"}
    allowed = {(f"xenstack.{a}", f"xenstack.{b}") for a, b in UPWARD}
    new = [str(upward[k]) for k in sorted(set(upward) - allowed)]
    assert not new, "imports of a higher layer:\n" + "\n".join(new)
    stale = sorted(allowed - set(upward))
    assert not stale, f"no longer imported: delete from UPWARD: {stale}"
    cycles = {v.key: v for v in found if v.kind == "cycle"}
    allowed_cycles = {_full(c) for c in CYCLES}
    new = [str(cycles[k]) for k in sorted(set(cycles) - allowed_cycles)]
    assert not new, "cycles not in CYCLES (replace a shrunk one):\n" + "\n".join(new)
    stale = sorted(allowed_cycles - set(cycles))
    assert not stale, f"cycles that are gone: delete or shrink in CYCLES: {stale}"
