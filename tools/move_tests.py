#!/usr/bin/env python3
"""Move the test files into folders that mirror ``src/xenstack`` (an OLD -> NEW table).

Run from anywhere inside the repository: ``python3 tools/move_tests.py`` (``--dry-run`` prints
what it would do).  It is meant to be re-run, e.g. on main after branches that still edit the
tests at their old places have merged, so every step is idempotent:

- each row of ``TABLE`` is ``git mv``-ed when OLD exists and NEW does not (a folder row moves
  the files in it one by one, so files added there since move too); a row already applied is
  skipped, one whose NEW and OLD both exist stops the script;
- a moved file's paths computed from its own location (``Path(__file__).parent / "golden"``,
  ``ROOT = Path(__file__).resolve().parent.parent``) are re-aimed at the same target from the
  new place, and so are those of unmoved files whose target moved (the xe goldens);
- the shared helpers (``vmkit``, ``xekit``, ``sr_helpers`` ...) stay importable as top-level
  modules: every folder holding one is listed in pytest's ``pythonpath`` in pyproject.toml;
- mentions of an old path (``tests/test_layers.py``) in docs, comments and docstrings name
  the new one.

Nothing else in a test changes.  Test files at the top of ``tests/`` that the table does not
name are listed at the end, to be given a row.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# OLD -> NEW, relative to the repository.  A folder row (no ".py") moves everything under it.
TABLE: list[tuple[str, str]] = [
    # rpc: the wire, HTTP front door, strings the wire cannot carry
    ("tests/test_core_wire.py", "tests/rpc/test_core_wire.py"),
    ("tests/test_core_fuzz.py", "tests/rpc/test_core_fuzz.py"),
    ("tests/test_security_http_rbac.py", "tests/rpc/test_security_http_rbac.py"),
    ("tests/test_security_limits.py", "tests/rpc/test_security_limits.py"),
    ("tests/test_security_strings.py", "tests/rpc/test_security_strings.py"),
    # api: dispatch and its errors, sessions, RBAC, tasks, accessors
    ("tests/test_core_accessors.py", "tests/api/test_core_accessors.py"),
    ("tests/test_core_errors.py", "tests/api/test_core_errors.py"),
    ("tests/test_core_session.py", "tests/api/test_core_session.py"),
    ("tests/test_core_tasks.py", "tests/api/test_core_tasks.py"),
    ("tests/test_security_login.py", "tests/api/test_security_login.py"),
    ("tests/test_security_rbac.py", "tests/api/test_security_rbac.py"),
    # impl, by subpackage
    ("tests/test_vm_clone.py", "tests/impl/vm/test_vm_clone.py"),
    ("tests/test_vm_devices.py", "tests/impl/vm/test_vm_devices.py"),
    ("tests/test_vm_lifecycle.py", "tests/impl/vm/test_vm_lifecycle.py"),
    ("tests/test_vm_lifecycle_property.py", "tests/impl/vm/test_vm_lifecycle_property.py"),
    ("tests/test_lifecycle_tables.py", "tests/impl/test_lifecycle_tables.py"),
    ("tests/test_api_forwarding.py", "tests/api/test_api_forwarding.py"),
    ("tests/test_api_refs.py", "tests/api/test_api_refs.py"),
    ("tests/test_vm_guest_agent.py", "tests/xenops/test_vm_guest_agent.py"),
    ("tests/test_toolstack_root.py", "tests/quality/test_toolstack_root.py"),
    ("tests/test_vm_transfer.py", "tests/impl/vm/test_vm_transfer.py"),
    ("tests/test_vm_workflow.py", "tests/impl/vm/test_vm_workflow.py"),
    ("tests/test_sim_devices.py", "tests/impl/devices/test_sim_devices.py"),
    ("tests/test_sim_network.py", "tests/impl/network/test_sim_network.py"),
    ("tests/test_sim_storage.py", "tests/impl/storage/test_sim_storage.py"),
    ("tests/test_host_pool.py", "tests/impl/pool/test_host_pool.py"),
    ("tests/test_pool_join.py", "tests/impl/pool/test_pool_join.py"),
    ("tests/test_sim_install.py", "tests/impl/install/test_sim_install.py"),
    ("tests/test_sim_messages.py", "tests/impl/system/test_sim_messages.py"),
    # backends
    ("tests/test_vm_backend.py", "tests/xenops/test_vm_backend.py"),
    ("tests/storage_sr", "tests/storage/sr"),
    ("tests/test_plugins.py", "tests/plugins/test_plugins.py"),
    # db: the event log, durability, the state directory
    ("tests/test_core_events.py", "tests/db/test_core_events.py"),
    ("tests/test_core_durability.py", "tests/db/test_core_durability.py"),
    ("tests/test_security_state.py", "tests/db/test_security_state.py"),
    # idl: the declaration, its freshness, its error codes, the surface a server answers
    ("tests/test_idl_errors.py", "tests/idl/test_idl_errors.py"),
    ("tests/test_idl_fresh.py", "tests/idl/test_idl_fresh.py"),
    ("tests/test_core_coverage.py", "tests/idl/test_core_coverage.py"),
    # cli: xe and its golden files
    ("tests/test_xe_cli.py", "tests/cli/test_xe_cli.py"),
    ("tests/test_xe_golden.py", "tests/cli/test_xe_golden.py"),
    ("tests/test_xe_help.py", "tests/cli/test_xe_help.py"),
    ("tests/test_xe_infra_ops.py", "tests/cli/test_xe_infra_ops.py"),
    ("tests/test_xe_snippets.py", "tests/cli/test_xe_snippets.py"),
    ("tests/test_xe_units.py", "tests/cli/test_xe_units.py"),
    ("tests/test_xe_vm_extra_ops.py", "tests/cli/test_xe_vm_extra_ops.py"),
    ("tests/test_xe_vm_ops.py", "tests/cli/test_xe_vm_ops.py"),
    ("tests/golden", "tests/cli/golden"),
    # real clients, beside their own files
    ("tests/test_client_ansible.py", "tests/clients/test_client_ansible.py"),
    ("tests/test_client_xen_api.py", "tests/clients/test_client_xen_api.py"),
    # the code's own checks
    ("tests/test_quality.py", "tests/quality/test_quality.py"),
    ("tests/test_layers.py", "tests/quality/test_layers.py"),
]

# Stay at the top of tests/: the one conftest, the helpers every folder imports, the smoke test.
KEEP = {"conftest.py", "vmkit.py", "sim_helpers.py", "xekit.py", "test_core_support.py"}
KEEP |= {"test_smoke.py", "systools.py"}
KEEP |= {"rrdkit.py", "poolkit.py"}

# Where path mentions are rewritten (and never in golden outputs or in this table).
TEXT_SUFFIXES = {".md", ".py", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh"}
TEXT_FILES = {".ci/run"}

DRY = "--dry-run" in sys.argv


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def say(message: str) -> None:
    print(("(dry run) " if DRY else "") + message)


def files_under(rel: str) -> list[str]:
    """The files under folder ``rel`` (tracked or not, ignored ones left out), sorted."""
    out = git("ls-files", "--cached", "--others", "--exclude-standard", "--", rel)
    return sorted(p for p in out.splitlines() if (ROOT / p).is_file())


def plan_moves() -> list[tuple[str, str]]:
    """(old file, new file) for every row not applied yet; stops on a row applied twice."""
    moves = []
    for old, new in TABLE:
        pairs = [(old, new)]
        if (ROOT / old).is_dir():
            pairs = [(p, new + p[len(old) :]) for p in files_under(old)]
        for src, dst in pairs:
            if (ROOT / src).exists() and (ROOT / dst).exists():
                sys.exit(f"both {src} and {dst} exist: merge them by hand, then re-run")
            if (ROOT / src).exists():
                moves.append((src, dst))
    return moves


def move(moves: list[tuple[str, str]]) -> None:
    for src, dst in moves:
        say(f"git mv {src} {dst}")
        if DRY:
            continue
        (ROOT / dst).parent.mkdir(parents=True, exist_ok=True)
        if git("ls-files", "--", src).strip():
            git("mv", src, dst)
        else:
            (ROOT / src).rename(ROOT / dst)
    for old, _new in TABLE:
        folder = ROOT / old
        if not DRY and folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder)  # only empty folders (and __pycache__ leftovers) remain


def moved_prefixes(moves: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The table rows (file or folder) that moved something in this run, longest first."""
    rows = [(o, n) for o, n in TABLE if any(s == o or s.startswith(o + "/") for s, _ in moves)]
    return sorted(rows, key=lambda row: -len(row[0]))


def relocate(path: str, rows: list[tuple[str, str]]) -> str:
    for old, new in rows:
        if path == old or path.startswith(old + "/"):
            return new + path[len(old) :]
    return path


# Path(__file__)[.resolve()] then .parent... or .parents[n], then / "literal" segments.
FILE_PATH = re.compile(
    r"Path\(__file__\)(?P<resolve>\.resolve\(\))?"
    r"(?P<up>(?:\.parent(?!s))+|\.parents\[(?P<n>\d+)\])"
    r'(?P<segs>(?:\s*/\s*"[^"\n]*")*)'
)
SEGMENT = re.compile(r'"([^"\n]*)"')


def target_of(match: re.Match[str], folder: tuple[str, ...]) -> tuple[str, ...] | None:
    """The repository-relative parts a FILE_PATH match names, from a file in ``folder``."""
    up = int(match["n"]) if match["n"] else match["up"].count(".parent") - 1
    if up > len(folder):
        return None
    segs = [s for lit in SEGMENT.findall(match["segs"]) for s in lit.split("/") if s]
    return folder[: len(folder) - up] + tuple(segs)


def expression(match: re.Match[str], target: tuple[str, ...], folder: tuple[str, ...]) -> str:
    """A FILE_PATH expression in the original's style naming ``target`` from ``folder``."""
    common = 0
    while common < min(len(target), len(folder)) and target[common] == folder[common]:
        common += 1
    up = len(folder) - common
    by_index = match["n"] is not None or up > 1
    ups = f".parents[{up}]" if by_index else ".parent" * (up + 1)
    segs = "".join(f' / "{s}"' for s in target[common:])
    return f"Path(__file__){match['resolve'] or ''}{ups}{segs}"


def fix_file_paths(text: str, origin: str, here: str, rows: list[tuple[str, str]]) -> str:
    """Re-aim the paths ``text`` computes from its file, written at ``origin``, now ``here``."""
    old_dir, new_dir = Path(origin).parent.parts, Path(here).parent.parts

    def fix(match: re.Match[str]) -> str:
        target = target_of(match, old_dir)
        if target is None:
            return match[0]
        moved = tuple(Path(relocate("/".join(target), rows)).parts)
        if moved == target and origin == here:
            return match[0]
        return expression(match, moved, new_dir)

    return FILE_PATH.sub(fix, text)


def fix_paths_in_tests(moves: list[tuple[str, str]]) -> list[str]:
    """Apply fix_file_paths to every Python file under tests/; the paths it changed."""
    rows = moved_prefixes(moves)
    if DRY:  # nothing has moved: read each file at its origin, name it by its destination
        dest_of = dict(moves)
        files = [(rel, dest_of.get(rel, rel), rel) for rel in files_under("tests")]
    else:
        origin_of = {dst: src for src, dst in moves}
        files = [(origin_of.get(rel, rel), rel, rel) for rel in files_under("tests")]
    changed = []
    for origin, here, on_disk in files:
        if not here.endswith(".py"):
            continue
        text = (ROOT / on_disk).read_text()
        new = fix_file_paths(text, origin, here, rows)
        if new != text:
            changed.append(here)
            for before, after in zip(text.splitlines(), new.splitlines(), strict=True):
                if before != after:
                    say(f"{here}: {before.strip()}  ->  {after.strip()}")
            if not DRY:
                (ROOT / here).write_text(new)
        for n, line in enumerate(new.splitlines(), 1):
            if "Path(__file__)" in line and not FILE_PATH.search(line):
                print(f"check by hand: {here}:{n}: {line.strip()}")
    return changed


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def helper_folders() -> list[str]:
    """tests/ and every folder holding a module of tests/ that another one imports."""
    modules: dict[str, str] = {}
    for rel in files_under("tests"):
        stem = Path(rel).stem
        if rel.endswith(".py") and stem != "conftest":
            if stem in modules:
                sys.exit(f"two test modules named {stem}: {modules[stem]}, {rel} (rename one)")
            modules[stem] = rel
    imported: set[str] = set()
    for rel in modules.values():
        imported |= top_level_imports(ROOT / rel)
    for conftest in (p for p in files_under("tests") if p.endswith("conftest.py")):
        imported |= top_level_imports(ROOT / conftest)
    folders = {str(Path(modules[name]).parent) for name in imported if name in modules}
    return sorted(folders | {"tests"})


PYTHONPATH = re.compile(r"^pythonpath = \[.*\]\n", re.MULTILINE)
PYTHONPATH_WHY = "# the shared test helpers are imported as top-level modules from every folder\n"


def set_pythonpath(folders: list[str]) -> None:
    """Write pytest's ``pythonpath`` (after ``testpaths``) in pyproject.toml."""
    path = ROOT / "pyproject.toml"
    text = path.read_text()
    line = "pythonpath = [" + ", ".join(f'"{f}"' for f in folders) + "]\n"
    if PYTHONPATH.search(text):
        new = PYTHONPATH.sub(lambda _: line, text, count=1)
    else:
        after = re.compile(r"^(testpaths = .*\n)", re.MULTILINE)
        new = after.sub(lambda m: m[1] + PYTHONPATH_WHY + line, text, count=1)
    if new != text:
        say(f"pyproject.toml: {line.strip()}")
        if not DRY:
            path.write_text(new)


def mention(old: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w./-])" + re.escape(old) + r"(?![\w-])")


def fix_mentions() -> list[str]:
    """Name the new paths wherever a text file of the repository names an applied row's old."""
    rows = [(mention(o), n) for o, n in TABLE if not (ROOT / o).exists() and (ROOT / n).exists()]
    changed = []
    for rel in git("ls-files").splitlines():
        path = ROOT / rel
        wanted = path.suffix in TEXT_SUFFIXES or rel in TEXT_FILES
        own = rel in ("tools/move_tests.py", "tests/quality/test_move_tests.py")  # examples
        if not wanted or own or "/golden/" in rel or not path.is_file():
            continue
        text = path.read_text()
        new = text
        for pattern, replacement in rows:
            new = pattern.sub(replacement, new)
        if new != text:
            say(f"old test paths renamed in {rel}")
            changed.append(rel)
            if not DRY:
                path.write_text(new)
    return changed


def format_changed(paths: list[str]) -> None:
    """ruff format what the script rewrote (the rest of each file is formatted already)."""
    ruff = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    python = [p for p in paths if p.endswith(".py")]
    if python and not DRY and Path(ruff).exists():
        subprocess.run([ruff, "format", "-q", *python], cwd=ROOT, check=True)


def unplaced() -> list[str]:
    """Python files at the top of tests/ that neither KEEP nor a row of TABLE names."""
    named = KEEP | {Path(old).name for old, _new in TABLE}
    top = [p for p in files_under("tests") if p.count("/") == 1 and p.endswith(".py")]
    return [p for p in top if Path(p).name not in named]


def main() -> int:
    moves = plan_moves()
    move(moves)
    changed = fix_paths_in_tests(moves)
    if not DRY:
        set_pythonpath(helper_folders())
        changed += fix_mentions()
    format_changed(changed)
    say(f"{len(moves)} files moved, {len(set(changed))} files edited")
    for rel in unplaced():
        print(f"not in the table, left at the top of tests/: {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
