"""Unit tests of xe's parsing and printing (no server)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from xenstack.cli.xe import parse_params
from xenstack.cli.xe.config import Settings, settings, split_extra, take_options
from xenstack.cli.xe.output import Printer, UsageError, escape_commas, record_block
from xenstack.cli.xe.records import enum_from_text, enum_text, record_kind


def test_record_block_alignment() -> None:
    rec = [("uuid ( RO)", "u"), ("name-label ( RW)", "n"), ("power-state ( RO)", "p")]
    assert record_block(rec) == (
        "uuid ( RO)           : u\n     name-label ( RW): n\n    power-state ( RO): p\n"
    )


def test_minimal_escapes_commas(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer(minimal=True)
    printer.table([[("name-label ( RW)", "a,b")], [("name-label ( RW)", "c\\d")]])
    printer.finish()
    assert capsys.readouterr().out == "a\\,b,c\\\\d\n"
    assert escape_commas("x,y") == "x\\,y"


def test_table_ends_each_record_with_a_blank_line(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer()
    printer.table([[("uuid ( RO)", "1")], [("uuid ( RO)", "2")]])
    printer.finish()
    assert capsys.readouterr().out == "uuid ( RO)    : 1\n\nuuid ( RO)    : 2\n\n"


def test_parse_params() -> None:
    assert parse_params(["a=b=c", "--minimal", "x="]) == [
        ("a", "b=c"), ("minimal", "true"), ("x", "")]  # fmt: skip
    with pytest.raises(UsageError):
        parse_params(["-q"])


def test_extra_args_split() -> None:
    assert split_extra("server=h,port=1,password=a\\,b") == ["server=h", "port=1", "password=a,b"]


def test_connection_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = Settings()
    rest = take_options(["vm-list", "-s", "h", "-p", "99", "-u", "me", "-pw", "pw", "x=1"], st)
    assert rest == ["vm-list", "x=1"]
    assert (st.server, st.port, st.username, st.password) == ("h", 99, "me", "pw")
    pwf = tmp_path / "pw"
    pwf.write_text("alice\nsecret\n")
    (tmp_path / ".xe").write_text("server=rc-host\nport=7\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XE_EXTRA_ARGS", "port=8")
    st, rest = settings(["vm-list", "--passwordfile", str(pwf)])
    assert (st.server, st.port, st.username, st.password) == ("rc-host", 8, "alice", "secret")
    assert rest == ["vm-list"]


def test_enum_texts() -> None:
    assert enum_text("vm_power_state", "Running") == "running"
    assert enum_text("on_crash_behaviour", "coredump_and_restart") == "Core dump and restart"
    assert enum_from_text("on_normal_exit", "restart") == "restart"
    assert enum_from_text("vbd_mode", "ro") == "RO"


def test_record_kinds_have_default_columns() -> None:
    vm = record_kind("vm")
    assert vm is not None and vm.api_class == "VM"
    assert vm.filters == (("is-a-template", "false"),)
    assert vm.columns == ("name-label", "uuid", "power-state")
    template = record_kind("template")
    assert template is not None and ("is-a-snapshot", "false") in template.filters
    field = vm.field("resident-on")
    assert field is not None and field.label == "resident-on ( RO)"
    other = vm.field("other-config")
    assert other is not None and other.label == "other-config (MRW)"


def test_completion_script_is_valid_bash() -> None:
    import shutil
    import subprocess

    import xenstack.cli.xe as xe_pkg

    script = Path(xe_pkg.__file__).with_name("xe-completion.bash")
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    res = subprocess.run([bash, "-c", f"source {script} && complete -p xe"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0 and "_xe" in res.stdout


ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "xenapi.json"
XEN_API = Path(os.environ.get("XEN_API_CHECKOUT", ROOT.parent / "xen-api"))


def _gen_fields() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_fields", ROOT / "tools" / "gen_fields.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not REFERENCE.exists(), reason="no reference file beside the checkout")
def test_fields_table_matches_the_reference() -> None:
    """Every class, field, reference and message the CLI table names is in the published API."""
    from xenstack.cli.xe.fields_table import DATA

    gen = _gen_fields()
    reference = json.loads(REFERENCE.read_text())
    assert gen.reference_problems(DATA, reference) == []
    bad = copy.deepcopy(DATA)
    bad["records"]["vm"][1][0][2] = "no_such_field"
    bad["records"]["vm"][1][0][5] = ["VM.set_nothing", "str"]
    assert gen.reference_problems(bad, reference) == [
        f"vm.{DATA['records']['vm'][1][0][0]}: VM has no field no_such_field",
        f"vm.{DATA['records']['vm'][1][0][0]}: no message VM.set_nothing",
    ]


@pytest.mark.skipif(
    not (XEN_API / "ocaml" / "xapi-cli-server" / "records.ml").exists(),
    reason="no xen-api checkout for the CLI sources (set XEN_API_CHECKOUT)",
)
def test_fields_table_is_fresh() -> None:
    """Regenerated from XAPI's CLI sources, the table is what is committed."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_fields.py"), str(XEN_API), "--check"],
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, "fields_table.py is stale: run tools/gen_fields.py"
