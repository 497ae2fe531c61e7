"""Every error the code raises with a literal code comes from the declaration (idl/errors.py).

The scan reads src/xenstack with ``ast``: each ``ApiError(code, params)`` (and each call of the
few helpers that take a code and its parameters, ``CONSTRUCTORS``) whose code is a literal
must name a declared code, and a literal parameter list must have the declared length.  Where
XAPI itself passes another count, a comment on the call or on the line above says so and names
the XAPI source: ``# xapi: ocaml/xapi/xapi_vm.ml passes 2``.  SM backend failures are one
family: XAPI's ocaml/xapi/sm_exec.ml makes ``SR_BACKEND_FAILURE_<n>`` from the SM error number,
with SR_BACKEND_FAILURE's three parameters.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from xenstack.idl.errors import ERROR_PARAMS

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "xenstack"

# callee name -> (position of the code, position of the parameter list)
CONSTRUCTORS = {"ApiError": (0, 1), "_ban": (1, 2)}
FAMILY = re.compile(r"SR_BACKEND_FAILURE_\d+")
FAMILY_PREFIX = "SR_BACKEND_FAILURE_"
# Codes of the plug-in protocol, not of XAPI: XenAPIPlugin's dispatcher answers an unknown
# function so and XAPI relays a plug-in's own failure as it is (the runner answers the same
# for a function name no plug-in could be given).
PLUGIN_CODES = {"UNKNOWN_XENAPI_PLUGIN_FUNCTION": ("fn",)}
XAPI_COMMENT = re.compile(r"#\s*xapi:\s*(ocaml/\S+\.ml)\s+passes\s+(\d+)\b")


@dataclass(frozen=True)
class Raised:
    """One call with a literal code; ``count`` is None when the parameters are not a literal."""

    where: str
    code: str
    count: int | None
    xapi_count: int | None  # what a ``# xapi: ... passes N`` comment says


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _code(node: ast.expr) -> str | None:
    """A literal code; an f-string stands for its literal head (``SR_BACKEND_FAILURE_``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value + "{}"
    return None


def _params(call: ast.Call, at: int) -> ast.expr | None:
    if len(call.args) > at:
        return call.args[at]
    return next((k.value for k in call.keywords if k.arg == "params"), None)


def _count(params: ast.expr | None) -> int | None:
    if params is None:
        return 0
    if isinstance(params, (ast.List, ast.Tuple)) and not any(
        isinstance(e, ast.Starred) for e in params.elts
    ):
        return len(params.elts)
    return None


def _xapi_count(lines: list[str], call: ast.Call) -> int | None:
    """The count a ``# xapi:`` comment gives on the call's lines or on the line above it."""
    end = call.end_lineno or call.lineno
    for text in lines[max(call.lineno - 2, 0) : end]:
        if match := XAPI_COMMENT.search(text):
            return int(match.group(2))
    return None


def scan(root: Path) -> list[Raised]:
    """Every call of an error constructor with a literal code under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, str(path))):
            if not isinstance(node, ast.Call) or _callee(node) not in CONSTRUCTORS:
                continue
            code_at, params_at = CONSTRUCTORS[_callee(node)]
            code = _code(node.args[code_at]) if len(node.args) > code_at else None
            if code is None:
                continue  # a code passed on (a plugin's, a remote host's): not ours to check
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            count = _count(_params(node, params_at))
            found.append(Raised(where, code, count, _xapi_count(lines, node)))
    return found


def _declared(code: str) -> tuple[str, ...] | None:
    if code in ERROR_PARAMS:
        return ERROR_PARAMS[code]
    if code in PLUGIN_CODES:
        return PLUGIN_CODES[code]
    if FAMILY.fullmatch(code) or code == FAMILY_PREFIX + "{}":
        return ERROR_PARAMS["SR_BACKEND_FAILURE"]
    return None


def problems(raised: list[Raised]) -> list[str]:
    """What is wrong with each call: an undeclared code, or a count neither declared nor XAPI's."""
    out = []
    for r in raised:
        declared = _declared(r.code)
        if declared is None:
            out.append(f"{r.where}: {r.code} is not declared in idl/errors.py")
        elif r.xapi_count is not None and r.xapi_count != r.count:
            out.append(
                f"{r.where}: {r.code} passes {r.count}, its xapi comment says {r.xapi_count}"
            )
        elif r.count is not None and r.count != len(declared) and r.xapi_count is None:
            out.append(
                f"{r.where}: {r.code} passes {r.count} parameters, declared {len(declared)} "
                f"{declared}; fix it or name XAPI's source (# xapi: ocaml/... passes {r.count})"
            )
    return out


def test_every_literal_code_is_declared_with_its_parameter_count() -> None:
    raised = scan(SRC)
    assert len(raised) > 200  # the scan sees the calls
    assert problems(raised) == []


def test_the_pool_join_codes_are_xapis() -> None:
    codes = {r.code for r in scan(SRC) if "impl/pool/join.py" in r.where}
    assert {"HOSTS_NOT_HOMOGENEOUS", "HOSTS_NOT_COMPATIBLE"} <= codes
    assert not {c for c in codes if c.startswith("POOL_HOSTS_")}


SYNTHETIC = """
from xenstack.errors import ApiError

def f(ctx, vm):
    raise ApiError("NO_SUCH_CODE_AT_ALL", [])

def g(vm):
    raise ApiError("VM_IS_TEMPLATE", [vm, "start"])

def h(vm):
    # xapi: ocaml/xapi/xapi_vm_lifecycle.ml passes 2
    return ApiError("VM_IS_TEMPLATE", [vm, "start"])

def i(vm):
    # xapi: ocaml/xapi/xapi_vm_lifecycle.ml passes 3
    return ApiError("VM_IS_TEMPLATE", [vm])

def j(table, vm, err):
    _ban(table, "HANDLE_INVALID", ["VM"], ["start"])
    raise ApiError("SR_BACKEND_FAILURE_79", ["", "no space", ""])
    raise ApiError(f"SR_BACKEND_FAILURE_{err}", ["", "no space"])
    raise ApiError(f"POOL_{err}", [])
    raise ApiError(err, [vm])
"""


def test_the_scan_fails_on_undeclared_codes_and_wrong_counts(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "mod.py").write_text(SYNTHETIC)
    found = problems(scan(root))
    assert [line.split(": ", 1)[0] for line in found] == [
        "pkg/mod.py:5",
        "pkg/mod.py:8",
        "pkg/mod.py:16",
        "pkg/mod.py:19",
        "pkg/mod.py:21",
        "pkg/mod.py:22",
    ]
    assert "NO_SUCH_CODE_AT_ALL is not declared" in found[0]
    assert "passes 2 parameters, declared 1" in found[1]
    assert "its xapi comment says 3" in found[2]
    assert "HANDLE_INVALID passes 1 parameters, declared 2" in found[3]
    assert "POOL_{} is not declared" in found[5]
