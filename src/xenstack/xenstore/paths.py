"""XenStore paths: Xen's syntax, and relative paths resolved against a domain's home."""

from __future__ import annotations

import re

from .errors import XsError

INTRODUCE = "@introduceDomain"
RELEASE = "@releaseDomain"
SPECIAL = (INTRODUCE, RELEASE)
MAX_ABSOLUTE = 3072
MAX_RELATIVE = 2048
_VALID = re.compile(r"[A-Za-z0-9\-/_@]+")


def home(domid: int) -> str:
    """A domain's own subtree, where its relative paths start."""
    return f"/local/domain/{domid}"


def resolve(path: str, domid: int) -> str:
    """The absolute, checked form of ``path`` as domain ``domid`` wrote it."""
    if not path or not _VALID.fullmatch(path) or "//" in path:
        raise XsError("EINVAL")
    if len(path) > 1 and path.endswith("/"):
        raise XsError("EINVAL")
    if path.startswith("/"):
        if len(path) > MAX_ABSOLUTE:
            raise XsError("EINVAL")
        return path
    if len(path) > MAX_RELATIVE:
        raise XsError("EINVAL")
    return f"{home(domid)}/{path}"


def relative_to(path: str, domid: int) -> str:
    """``path`` as a domain that named it relatively sees it (watch events)."""
    prefix = home(domid) + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def basename(path: str) -> str:
    return path.rsplit("/", 1)[1]


def ancestors(path: str) -> list[str]:
    """``path``'s ancestors from the root down, without ``path``."""
    out = ["/"]
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        out.append("/" + "/".join(parts[:i]))
    return out if path != "/" else []


def is_under(path: str, top: str) -> bool:
    """``path`` is ``top`` or inside it."""
    return path == top or top == "/" or path.startswith(top + "/")
