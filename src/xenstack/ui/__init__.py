"""The browser UI's files: a XenAPI client in the page, as XO Lite is one (served at ``/``).

Representation only: :func:`asset` finds a file of the UI by its path under ``/ui/``, never
outside this folder; ``vendor/novnc/...`` are noVNC's modules, installed from npm into
``node_modules`` by ``npm ci`` here (``.ci/run`` does it), not copied into the tree.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDORS = {"novnc": HERE / "node_modules" / "@novnc" / "novnc"}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}


def _inside(root: Path, relative: str) -> Path | None:
    if "\x00" in relative or relative.startswith("/"):
        return None
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


def asset(relative: str) -> tuple[bytes, str] | None:
    """The bytes and content type of ``/ui/<relative>``, or None if there is no such file."""
    head, _, rest = relative.partition("/")
    if head == "vendor":
        name, _, inner = rest.partition("/")
        root = VENDORS.get(name)
        path = _inside(root, inner) if root is not None else None
    else:
        path = _inside(STATIC, relative)
    if path is None or path.suffix not in TYPES:
        return None
    return path.read_bytes(), TYPES[path.suffix]


def index() -> bytes:
    return (STATIC / "index.html").read_bytes()


def has_vendor(name: str) -> bool:
    return (VENDORS.get(name, HERE / "-") / "package.json").is_file()
