"""New records are built from the class declaration (``core.objects.new_record``), not as literals.

The check reads impl with ``ast``: a dict literal of more than :data:`MAX_KEYS` keys passed
straight to ``<db>.create(cls, ref, {...})`` or ``create_object(ctx, cls, {...})``, for a class
the IDL declares, is a record written out by hand. :data:`NOT_YET` would name an exception
by file and class (none is left); the test fails both on a new literal and on a listed one
that is gone, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

from xenstack.idl.model import CLASSES

IMPL = Path(__file__).resolve().parents[2] / "src" / "xenstack" / "impl"
MAX_KEYS = 3  # a metrics row's uuid and a stamp or two is not a record written out

NOT_YET: set[tuple[str, str]] = set()  # every row is built from the declaration now


def record_literals(source: str) -> list[tuple[int, str]]:
    """(line, class) of each dict literal of more than MAX_KEYS keys given to a create call."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in ("create", "create_object"):
            continue
        classes = [
            a.value
            for a in node.args
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value in CLASSES
        ]
        for arg in node.args:
            if classes and isinstance(arg, ast.Dict) and len(arg.keys) > MAX_KEYS:
                found.append((node.lineno, classes[0]))
    return found


def test_scanner_finds_a_literal_record() -> None:
    bad = 'db.create("VIF", ref, {"uuid": u, "VM": vm, "MAC": mac, "MTU": 1500})'
    assert record_literals(bad) == [(1, "VIF")]
    small = 'db.create("VM_metrics", ref, {"uuid": u, "install_time": t})'
    built = 'db.create("VIF", ref, new_record("VIF", uuid=u, VM=vm, MAC=mac, MTU=1500))'
    assert record_literals(small) == [] and record_literals(built) == []
    assert record_literals('create_object(ctx, "VM", {"a": 1, "b": 2, "c": 3, "d": 4})')


def test_impl_builds_records_from_the_declaration() -> None:
    seen: set[tuple[str, str]] = set()
    new: list[str] = []
    for path in sorted(IMPL.rglob("*.py")):
        rel = path.relative_to(IMPL).as_posix()
        for line, cls in record_literals(path.read_text()):
            seen.add((rel, cls))
            if (rel, cls) not in NOT_YET:
                new.append(f"impl/{rel}:{line}: a {cls} record literal (use new_record)")
    assert new == []
    assert sorted(NOT_YET - seen) == [], "converted: remove from NOT_YET"
