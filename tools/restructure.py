"""One-off codemod: impl in subpackages, the shared core at the bottom (issue 10, points 1 and 4).

Run from the repository root on a clean tree: ``python tools/restructure.py``. It

1. ``git mv``s every module of :data:`MODULES` (old dotted name -> new, under ``xenstack``),
   creating the new packages and removing the emptied ones (:data:`REMOVED`);
2. rewrites every import in ``src``, ``tests``, ``bench`` and ``tools`` (top-level,
   ``TYPE_CHECKING`` and function-local; ``import a.b``, ``from a import b``, ``from . import
   x``, relative and absolute, keeping each file's style and each bound name), moving the
   names of :data:`SYMBOLS` to their new module;
3. rewrites dotted references (``"xenstack.impl.vm_power.asyncio.sleep"`` in
   ``monkeypatch``/``mock`` strings, ``:mod:`` roles, attribute chains) in one pass;
4. runs ``ruff check --fix --select I`` and ``ruff format`` to sort the imports again.

It is written to be re-run on a newer main: it reads the tree, not a patch. Delete it once
it has been applied.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
TREES = ("src", "tests", "bench", "tools")

#: old module -> new module (both relative to ``xenstack``)
MODULES: dict[str, str] = {
    # the shared core and the pure helpers leave the layers that used to hold them
    "api.context": "core.context",
    "rpc.tls": "core.tls",
    "api.validate": "core.validate",
    "api.where": "db.where",
    # format code leaves impl
    "impl.xva_metadata": "storage.xva_metadata",
    # VMs
    "impl.vm": "impl.vm.vm",
    "impl.vm_checks": "impl.vm.checks",
    "impl.vm_clone": "impl.vm.clone",
    "impl.vm_export": "impl.vm.export",
    "impl.vm_import": "impl.vm.xva_import",
    "impl.vm_import_objects": "impl.vm.import_objects",
    "impl.vm_lifecycle": "impl.vm.lifecycle",
    "impl.vm_lifecycle_table": "impl.vm.lifecycle_table",
    "impl.vm_memory": "impl.vm.memory",
    "impl.vm_metrics": "impl.vm.metrics",
    "impl.vm_migrate": "impl.vm.migrate",
    "impl.vm_placement": "impl.vm.placement",
    "impl.vm_power": "impl.vm.power",
    "impl.vm_provision": "impl.vm.provision",
    "impl.vm_squeeze": "impl.vm.squeeze",
    "impl.vm_suspend_image": "impl.vm.suspend_image",
    "impl.guest_agent": "impl.vm.guest_agent",
    # storage
    "impl.sr": "impl.storage.sr",
    "impl.sr_backend": "impl.storage.sr_backend",
    "impl.sr_usage": "impl.storage.sr_usage",
    "impl.pbd": "impl.storage.pbd",
    "impl.sm": "impl.storage.sm",
    "impl.vdi": "impl.storage.vdi",
    "impl.vdi_rows": "impl.storage.vdi_rows",
    "impl.vdi_files": "impl.storage.vdi_files",
    "impl.vdi_transfer": "impl.storage.vdi_transfer",
    "impl.storage_service": "impl.storage.service",
    # networks
    "impl.network": "impl.network.network",
    "impl.pif": "impl.network.pif",
    "impl.pif_lifecycle": "impl.network.pif_lifecycle",
    "impl.vlan": "impl.network.vlan",
    "impl.bond": "impl.network.bond",
    "impl.tunnel": "impl.network.tunnel",
    # devices
    "impl.vbd": "impl.devices.vbd",
    "impl.vif": "impl.devices.vif",
    "impl.devices": "impl.devices.devices",
    "impl.device_lifecycle": "impl.devices.lifecycle",
    # hosts
    "impl.host": "impl.host.host",
    "impl.host_plugins": "impl.host.plugins",
    "impl.hypervisor": "impl.host.hypervisor",
    # pools: membership, and the top-level pool/ package
    "impl.pool": "impl.pool.pool",
    "impl.pool_join": "impl.pool.join",
    "impl.pool_eject": "impl.pool.eject",
    "pool.membership": "impl.pool.membership",
    "pool.remote": "impl.pool.remote",
    "pool.host_removal": "impl.pool.host_removal",
    # the fresh-install builders: one package
    "pool.bootstrap": "impl.install.bootstrap",
    "pool.fresh_network": "impl.install.network",
    "pool.fresh_storage": "impl.install.storage",
    "pool.templates": "impl.install.templates",
    # the API's own objects
    "impl.session": "impl.system.session",
    "impl.task": "impl.system.task",
    "impl.event": "impl.system.event",
    "impl.message": "impl.system.message",
}

#: packages that go away (their ``__init__`` holds nothing but a docstring)
REMOVED = ("pool", "net")

#: new packages -> their docstring
PACKAGES: dict[str, str] = {
    "impl.vm": "VMs: records, the lifecycle table and its checks, power, clone, export/import.",
    "impl.storage": "SRs, PBDs, SM drivers and VDIs: rows, file-backed VDIs, disk transfers.",
    "impl.network": "Networks, PIFs, VLANs, bonds and tunnels.",
    "impl.devices": "VBDs and VIFs, and the operations each allows.",
    "impl.host": "Hosts, their plug-ins, and the hypervisor backend of the toolstack.",
    "impl.pool": "The pool object, and hosts joining and leaving it.",
    "impl.install": "A fresh install: the pool, its hosts' networks, storage and templates.",
    "impl.system": "The API's own objects: sessions, tasks, events and messages.",
}

#: (old module, name) -> the module the name lives in now
SYMBOLS: dict[tuple[str, str], str] = {
    ("api.accessors", "new_ref"): "core.ids",
    ("api.accessors", "new_uuid"): "core.ids",
    ("api.accessors", "create_object"): "core.objects",
    ("api.tasks", "now"): "core.ids",
    ("rpc.http", "Origin"): "core.calls",
    ("rpc.http", "Pending"): "core.calls",
    ("rpc.xmlrpc", "encode_value"): "core.xmlrpc_values",
    ("rpc.xmlrpc", "value_text"): "core.xmlrpc_values",
}


def x(name: str) -> str:
    return f"xenstack.{name}" if name else "xenstack"


MOD = {x(k): x(v) for k, v in MODULES.items()}
SYM = {(x(m), n): x(v) for (m, n), v in SYMBOLS.items()}


def old_modules() -> set[str]:
    found = set()
    for p in (SRC / "xenstack").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.add(".".join(parts))
    return found


def new_name(module: str) -> str:
    """A module's new name (a module not moved keeps its own)."""
    return MOD.get(module, module)


# ---- step 1: the moves ------------------------------------------------------------------


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def move_files() -> None:
    for old, new in MOD.items():
        src = SRC / (old.replace(".", "/") + ".py")
        dst = SRC / (new.replace(".", "/") + ".py")
        if not src.exists():
            print(f"skip {old}: not there", file=sys.stderr)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        git("mv", str(src), str(dst))
    for pkg, doc in PACKAGES.items():
        init = SRC / "xenstack" / pkg.replace(".", "/") / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n')
            git("add", str(init))
    for pkg in REMOVED:
        folder = SRC / "xenstack" / pkg
        left = [p for p in folder.rglob("*.py") if p.name != "__init__.py"]
        if left:
            raise SystemExit(f"{folder} still holds {left}: add them to MODULES")
        if folder.exists():
            git("rm", "-q", "-r", str(folder))


# ---- step 2: the imports ----------------------------------------------------------------


def module_of(path: Path) -> tuple[str, bool] | None:
    """The (new) dotted name of a file under src/, and whether it is a package."""
    try:
        parts = list(path.relative_to(SRC).with_suffix("").parts)
    except ValueError:
        return None
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts.pop()
    return ".".join(parts), is_pkg


def relative(importer: str, is_pkg: bool, target: str) -> str:
    """``target`` as a relative module reference from ``importer`` (``..impl.sr``)."""
    here = importer.split(".") if is_pkg else importer.split(".")[:-1]
    there = target.split(".")
    common = 0
    while common < min(len(here), len(there)) and here[common] == there[common]:
        common += 1
    dots = "." * (len(here) - common + 1)
    return dots + ".".join(there[common:])


def absolute(importer: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_pkg else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def render_from(module: str, names: list[tuple[str, str | None]], indent: str) -> str:
    parts = [n if a is None or a == n else f"{n} as {a}" for n, a in names]
    one = f"{indent}from {module} import {', '.join(parts)}"
    if len(one) <= 100:
        return one
    body = "".join(f"{indent}    {p},\n" for p in parts)
    return f"{indent}from {module} import (\n{body}{indent})"


def rewrite_from(
    node: ast.ImportFrom, old_importer: str, new_importer: str, is_pkg: bool, known: set[str]
) -> list[tuple[str, list[tuple[str, str | None]]]] | None:
    """The import's new statements as (absolute module, names), or None if unchanged."""
    base = absolute(old_importer, is_pkg, node)
    if not base.startswith("xenstack"):
        return None
    groups: dict[str, list[tuple[str, str | None]]] = {}
    changed = False
    for alias in node.names:
        name, bound = alias.name, alias.asname
        sub = f"{base}.{name}"
        if sub in known:  # a module: from pkg import mod
            new = new_name(sub)
            parent, last = new.rsplit(".", 1)
            groups.setdefault(parent, []).append((last, bound or name))
            changed |= new != sub
        elif (base, name) in SYM:
            groups.setdefault(SYM[base, name], []).append((name, bound))
            changed = True
        else:
            new = new_name(base)
            groups.setdefault(new, []).append((name, bound))
            changed |= new != base
    if node.level and new_importer != old_importer:
        changed = True  # the importer moved: its relative imports change depth
    return list(groups.items()) if changed else None


def rewrite_imports(path: Path, known: set[str], moved_from: dict[Path, str]) -> int:
    text = path.read_text()
    tree = ast.parse(text)
    info = module_of(path)
    new_importer, is_pkg = info if info else ("", False)
    old_importer = moved_from.get(path, new_importer)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        indent = " " * getattr(node, "col_offset", 0)
        if isinstance(node, ast.ImportFrom):
            groups = rewrite_from(node, old_importer, new_importer, is_pkg, known)
            if groups is None:
                continue
            out = []
            for module, names in groups:
                ref = relative(new_importer, is_pkg, module) if node.level else module
                out.append(render_from(ref, names, indent))
            edits.append((node.lineno, node.end_lineno or node.lineno, "\n".join(out)))
        elif isinstance(node, ast.Import):
            names = [(new_name(a.name), a.asname) for a in node.names]
            if any(n != a.name for (n, _), a in zip(names, node.names, strict=True)):
                parts = [n if a is None else f"{n} as {a}" for n, a in names]
                edits.append(
                    (
                        node.lineno,
                        node.end_lineno or node.lineno,
                        f"{indent}import {', '.join(parts)}",
                    )
                )
    for start, end, new in sorted(edits, reverse=True):
        tail = lines[end - 1].rstrip("\n")
        comment = ""
        if "#" in tail and not tail.lstrip().startswith("#"):
            code = tail.split("#", 1)[0]
            if code.count('"') % 2 == 0 and code.count("'") % 2 == 0:
                comment = "  #" + tail.split("#", 1)[1]
        first, *rest = new.split("\n")
        new = "\n".join([first + comment if not rest else first, *rest])
        if rest and comment:
            new = new + comment
        lines[start - 1 : end] = [new + "\n"]
    new_text = "".join(lines)
    if new_text != text:
        path.write_text(new_text)
        return 1
    return 0


def write_impl_init(path: Path) -> int:
    """impl/__init__ imports every module that registers server functions, under names that
    never hide a subpackage (``from .vm import vm`` would bind ``impl.vm`` to the module)."""
    tree = ast.parse(path.read_text())
    modules: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
            modules += [new_name(f"xenstack.impl.{a.name}") for a in node.names]
    lines = [
        '"""Local work, one module per XenAPI class, in subpackages by area. Importing this',
        'package registers them all (the subpackages themselves import nothing)."""',
        "",
    ]
    bound = []
    for module in modules:
        parent, last = module.rsplit(".", 1)
        area = parent.rsplit(".", 1)[1]
        name = f"{area}_{last}" if last != area else last + "_class"
        lines.append(f"from {relative('xenstack.impl', True, parent)} import {last} as {name}")
        bound.append(name)
    lines += ["", f"__all__ = {sorted(bound)!r}".replace("'", '"'), ""]
    path.write_text("\n".join(lines))
    return 1


# ---- step 3: dotted references ----------------------------------------------------------


_ROLE = re.compile(r"(:(?:mod|func|class|data|meth|attr|exc):`~?)(\.+)([\w.]+)`")
_PATH = re.compile(r"(?<![\w/])((?:impl|pool|api|rpc)/\w+)\.py\b")


def rewrite_relative_roles(text: str, old: str, new: str, is_pkg: bool, known: set[str]) -> str:
    """Sphinx roles naming a module relatively (:mod:`.vm_power`) follow the move."""

    def one(m: re.Match[str]) -> str:
        base = old.split(".") if is_pkg else old.split(".")[:-1]
        base = base[: len(base) - (len(m.group(2)) - 1)]
        full = ".".join([*base, m.group(3)])
        parts = full.split(".")
        for cut in range(len(parts), 0, -1):
            module = ".".join(parts[:cut])
            if module in known:
                rest = "".join("." + p for p in parts[cut:])
                ref = relative(new, is_pkg, new_name(module))
                return f"{m.group(1)}{ref}{rest}`"
        return m.group(0)

    return _ROLE.sub(one, text)


def rewrite_paths(text: str) -> str:
    """``impl/vdi_transfer.py`` in prose follows the move."""

    def one(m: re.Match[str]) -> str:
        module = "xenstack." + m.group(1).replace("/", ".")
        if module not in MOD:
            return m.group(0)
        return MOD[module].removeprefix("xenstack.").replace(".", "/") + ".py"

    return _PATH.sub(one, text)


def rewrite_references(
    path: Path, known: set[str] | None = None, moved_from: dict[Path, str] | None = None
) -> int:
    """``xenstack.impl.vm_power`` (and what follows it) anywhere but in import statements
    (step 2 wrote those already), in one pass, so that no new name is mapped twice."""
    text = path.read_text()
    imports = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    info = module_of(path)
    olds = sorted(MOD, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(o) for o in olds) + r")(?![\w])")
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        if number in imports:
            continue
        if info is not None and known is not None and moved_from is not None:
            new_module, is_pkg = info
            old_module = moved_from.get(path, new_module)
            line = rewrite_relative_roles(line, old_module, new_module, is_pkg, known)
        line = rewrite_paths(line)
        line = pattern.sub(lambda m: MOD[m.group(1)], line)
        for (module, name), target in SYM.items():
            line = re.sub(rf"(?<![\w.]){re.escape(module)}\.{name}\b", f"{target}.{name}", line)
        lines[number - 1] = line
    new = "".join(lines)
    if new != text:
        path.write_text(new)
        return 1
    return 0


def files() -> list[Path]:
    out: list[Path] = []
    for tree in TREES:
        out += sorted(
            p for p in (ROOT / tree).rglob("*.py") if not {".venv", "node_modules"} & set(p.parts)
        )
    return [p for p in out if p.resolve() != Path(__file__).resolve()]


def main() -> None:
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    if status.stdout.strip() and "--dirty" not in sys.argv:
        raise SystemExit("the tree has changes: commit them first (or pass --dirty)")
    known = old_modules()
    missing = [m for m in MOD if m not in known]
    missing += [m for m in set(SYM.values()) if m not in known]
    if missing:
        raise SystemExit(f"modules of the table not in the tree: {missing}")
    move_files()
    moved_from = {
        (SRC / (new.replace(".", "/") + ".py")).resolve(): old for old, new in MOD.items()
    }
    changed = 0
    for path in files():
        if path.resolve() == (SRC / "xenstack" / "impl" / "__init__.py").resolve():
            changed += write_impl_init(path)
            continue
        changed += rewrite_imports(path.resolve(), known, moved_from)
        changed += rewrite_references(path.resolve(), known, moved_from)
    print(f"{len(MOD)} modules moved, {changed} rewrites")
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "--select", "I", *TREES], cwd=ROOT, check=False)
    subprocess.run([*ruff, "format", *TREES], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
