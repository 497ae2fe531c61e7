#!/usr/bin/env python3
"""The import graph of a package, built with ``ast``, checked against the layer order.

Every ``import`` statement counts, wherever it is: at the top of a module, under
``if TYPE_CHECKING:``, inside a function or a ``try``.  Relative imports are resolved against
the importing module.  ``from package import name`` is an edge to ``package.name`` when that is
a module of the tree, else to ``package``.  An edge goes to the named module only, not to the
parent packages Python also initialises; imports built at run time (``importlib``) are not seen.

The layers of xenstack, top to bottom (a module may import its own layer and any layer below):

    testing          test fixtures: may import everything; nothing in src may import it
    cli              the ``xenstack`` and ``xe`` commands
    toolstack        the composition root (a package): builds and wires every layer below
    rpc              the wire: HTTP, XML-RPC, JSON-RPC, the streaming endpoints
    api              policy: dispatch, sessions, roles, tasks, coercion
    impl             one module per XenAPI class, in subpackages by area (vm, storage,
                     network, devices, host, pool, system, install)
    xenops storage xenstore net plugins ha rrd ui
                     the backends: peers, none of which imports another (ha: the per-host
                     HA daemon: liveness and fencing, given its lease, peers and fence; rrd:
                     the metric archives; ui: the browser UI's files)
    core             what every layer above shares: ids and clock, the call context and the
                     ``Services`` protocol it is typed against, call origins, XML-RPC value
                     text, XML-safe strings, TLS, validation, roles and task ownership. It sits
                     below the backends, which use some of it (plugins check strings with
                     ``core.xmltext``, ``storage.xva_metadata`` writes values and validates
                     with it), and above ``db``, the store its context and ``Services``
                     are typed against
    db               the object store and its persistence
    idl              the XenAPI declaration
    base             xenstack/__init__.py and errors.py

A few layers must also keep apart from some layer below them (``APART``: the wire imports no
policy and no store, the IDL nothing of ours, the backends no store).

A violation is an import of a higher layer ("upward"), of a layer kept apart ("apart"), of a
peer in the same layer that is not the importer's own package ("sideways"), of a module the
layer map does not place ("unplaced"), or a set of modules that import each other ("cycle",
one strongly connected component of the graph).  Each names the files and lines behind it.

    python tools/layers.py [SRC_DIR]      # default: src/xenstack beside this script
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# top to bottom; each entry is one layer, a tuple of the top-level names it holds
LAYERS: tuple[tuple[str, ...], ...] = (
    ("testing",),
    ("cli",),
    ("toolstack",),
    ("rpc",),
    ("api",),
    ("impl",),
    ("xenops", "storage", "xenstore", "net", "plugins", "ha", "rrd", "ui"),
    ("core",),
    ("db",),
    ("idl",),
    ("", "errors"),  # "" is the package's own __init__.py
)

# lower layers that a layer must not import all the same: idl imports nothing of ours, the wire
# knows no policy and no store (the composition root hands it the dispatcher), backends keep
# no records of their own
APART: dict[str, tuple[str, ...]] = {
    "idl": ("", "errors"),
    "rpc": ("api", "impl", "db"),
    "xenops": ("db",),
    "storage": ("db",),
    "net": ("db",),
    "xenstore": ("db",),
    "ha": ("db",),
    "rrd": ("db",),
    "ui": ("db",),
    "plugins": ("db",),
}


@dataclass(frozen=True)
class Site:
    """Where an import statement is."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Graph:
    """Module name -> imported module name -> the statements that import it."""

    package: str
    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, dict[str, list[Site]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    """``key`` is line-agnostic (an allow-list entry); ``sites`` say where it happens."""

    kind: str  # upward, apart, sideways, unplaced or cycle
    key: tuple[str, ...]
    sites: tuple[Site, ...]

    def __str__(self) -> str:
        where = ", ".join(str(s) for s in self.sites)
        if self.kind == "cycle":
            return f"cycle among {len(self.key)} modules {' '.join(self.key)}: {where}"
        return f"{self.kind} import {self.key[0]} -> {self.key[1]}: {where}"


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_pkg: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        anchor = importer.split(".")
        anchor = anchor if is_pkg else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base]) if base else ".".join(anchor)
    for alias in node.names:
        yield f"{base}.{alias.name}" if alias.name != "*" else base


def build(root: Path, display_root: Path | None = None) -> Graph:
    """The import graph of the package in directory ``root`` (its name is the directory's)."""
    graph = Graph(root.name)
    shown = display_root or root.parent
    for path in sorted(root.rglob("*.py")):
        graph.modules[_module_name(root.name, root, path)] = path
    for name, path in graph.modules.items():
        out = graph.edges.setdefault(name, {})
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, name, path.name == "__init__.py"):
                resolved = _resolve(graph, target)
                if resolved is not None and resolved != name:
                    site = Site(str(path.relative_to(shown)), node.lineno)
                    sites = out.setdefault(resolved, [])
                    if site not in sites:  # one statement naming several things of a module
                        sites.append(site)
    return graph


def _resolve(graph: Graph, target: str) -> str | None:
    """The module of the tree that ``target`` names (``pkg.mod.func`` -> ``pkg.mod``)."""
    while target:
        if target in graph.modules:
            return target
        if "." not in target:
            return None
        target = target.rsplit(".", 1)[0]
    return None


def _top(graph: Graph, module: str) -> str:
    """The top-level name under the package: ``xenstack.impl.vm.vm`` -> ``impl``."""
    rest = module[len(graph.package) + 1 :] if module != graph.package else ""
    return rest.split(".", 1)[0]


def _rank(layers: Sequence[tuple[str, ...]], top: str) -> int | None:
    for i, names in enumerate(layers):
        if top in names:
            return i
    return None


def layer_violations(
    graph: Graph,
    layers: Sequence[tuple[str, ...]] = LAYERS,
    apart: dict[str, tuple[str, ...]] | None = None,
) -> list[Violation]:
    """Imports of a higher layer, of a layer kept apart, of a peer, or of a module in no layer."""
    apart = APART if apart is None else apart
    found: list[Violation] = []
    for importer, imported in sorted(graph.edges.items()):
        src = _top(graph, importer)
        for target, sites in sorted(imported.items()):
            dst = _top(graph, target)
            if src == dst:
                continue
            hi, lo = _rank(layers, src), _rank(layers, dst)
            if hi is None or lo is None:
                kind = "unplaced"
            elif lo < hi:
                kind = "upward"
            elif lo == hi:
                kind = "sideways"
            elif dst in apart.get(src, ()):
                kind = "apart"
            else:
                continue
            found.append(Violation(kind, (importer, target), tuple(sites)))
    return found


def cycles(graph: Graph) -> list[Violation]:
    """Every strongly connected component of more than one module, with its import sites."""
    found = []
    for component in _components(graph):
        members = set(component)
        sites = tuple(
            site
            for m in sorted(members)
            for t, at in sorted(graph.edges.get(m, {}).items())
            if t in members
            for site in at
        )
        found.append(Violation("cycle", tuple(sorted(members)), sites))
    return sorted(found, key=lambda v: v.key)


def _components(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has hundreds of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.edges.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(component)
    return out


def check(
    root: Path,
    layers: Sequence[tuple[str, ...]] = LAYERS,
    apart: dict[str, tuple[str, ...]] | None = None,
) -> list[Violation]:
    """Every layer violation and every cycle of the package in ``root``."""
    graph = build(root)
    return layer_violations(graph, layers, apart) + cycles(graph)


def main() -> int:
    default = Path(__file__).resolve().parent.parent / "src" / "xenstack"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    found = check(root)
    for violation in found:
        print(violation)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
