"""The generated declaration is fresh and untouched, and the dispatcher derives every accessor."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from xenstack.api.dispatch import build_table
from xenstack.cli.xe import fields_table
from xenstack.idl import declaration, defaults
from xenstack.idl import errors as idl_errors
from xenstack.idl.model import CLASSES

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "xenapi.json"
DIGEST_LINE = re.compile(r'\nDIGEST = "([0-9a-f]{64})"\n\Z')


@pytest.mark.skipif(not REFERENCE.exists(), reason="no reference file beside the checkout")
def test_declaration_matches_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_idl.py"), "--check"], timeout=120
    )
    assert done.returncode == 0, "declaration.py is stale: run tools/gen_idl.py"


def _generator(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rendered(module: ModuleType) -> str:
    """What the generator writes for the data the module holds now."""
    if module is declaration:
        return str(_generator("gen_idl").render(list(declaration.ROLE_SETS), declaration.CLASSES))
    if module is defaults:
        return str(_generator("gen_defaults").render(defaults.PARAM_DEFAULTS))
    if module is fields_table:
        return str(_generator("gen_fields").render(fields_table.DATA))
    return str(_generator("gen_errors").render(idl_errors.ERROR_PARAMS))


@pytest.mark.parametrize(
    "module",
    [declaration, idl_errors, defaults, fields_table],
    ids=["declaration", "errors", "defaults", "fields_table"],
)
def test_digest_matches_content(module: ModuleType) -> None:
    """The digest covers the generated data: a hand edit of any entry breaks it."""
    digest = module.DIGEST
    match = DIGEST_LINE.search(_rendered(module))
    assert match is not None
    assert match.group(1) == digest
    body = _rendered(module)[: match.start()]
    assert hashlib.sha256(body.encode()).hexdigest() == digest


@pytest.mark.parametrize("module", [declaration, fields_table], ids=["declaration", "fields_table"])
def test_generated_text_is_untouched(module: ModuleType) -> None:
    """Even the text is the generator's (declaration.py is excluded from formatting, the CLI
    table needs none): a hand edit of a comment or of the code around the data shows."""
    text = Path(str(module.__file__)).read_text()
    assert text == _rendered(module)


def test_every_implicit_message_is_derived() -> None:
    table = build_table()
    implicit = [m for c in CLASSES.values() for m in c.messages.values() if m.implicit]
    assert len(implicit) > 1000
    missing = [m.wire_name for m in implicit if table[m.wire_name].fn is None]
    assert missing == []


def test_every_declared_message_is_on_the_wire() -> None:
    table = build_table()
    declared = {m.wire_name for c in CLASSES.values() for m in c.messages.values()}
    assert declared <= set(table)
    extras = set(table) - declared
    assert {n.rsplit(".", 1)[1] for n in extras} <= {"get_all_records_where", "get_all_where"}


def test_defaults_are_trailing_parameters_of_declared_messages() -> None:
    for wire_name, params in defaults.PARAM_DEFAULTS.items():
        cls, _, name = wire_name.partition(".")
        declared = [p.name for p in CLASSES[cls].messages[name].params]
        assert declared[len(declared) - len(params) :] == [n for n, _ in params], wire_name
