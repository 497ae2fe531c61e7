"""Node permissions as Xen keeps them: an owner domain, rights for others, per-domain rights.

The first entry names the owner (who may do anything) and what every other domain may do;
later entries give a domain its own rights. Rights: ``r`` read, ``w`` write, ``b`` both,
``n`` none. Dom0 (privileged) is never refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import XsError

_ENTRY = re.compile(r"([rwbn])(\d+)")
READ = "r"
WRITE = "w"


@dataclass(frozen=True, slots=True)
class Perm:
    domid: int
    rights: str  # one of r, w, b, n

    def allows(self, want: str) -> bool:
        return self.rights == "b" or self.rights == want

    def __str__(self) -> str:
        return f"{self.rights}{self.domid}"


Perms = tuple[Perm, ...]
DOM0_ONLY: Perms = (Perm(0, "n"),)


def parse(entries: list[str]) -> Perms:
    """``["n0", "r5"]`` to permissions; EINVAL on anything else."""
    out = []
    for entry in entries:
        match = _ENTRY.fullmatch(entry)
        if match is None or int(match.group(2)) > 0x7FFFFFFF:
            raise XsError("EINVAL")
        out.append(Perm(int(match.group(2)), match.group(1)))
    if not out:
        raise XsError("EINVAL")
    return tuple(out)


def owner(perms: Perms) -> int:
    return perms[0].domid


def allowed(perms: Perms, domid: int, want: str, privileged: bool) -> bool:
    """May domain ``domid`` ``want`` (``r`` or ``w``) on a node with ``perms``?"""
    if privileged or perms[0].domid == domid:
        return True
    for perm in perms[1:]:
        if perm.domid == domid:
            return perm.allows(want)
    return perms[0].allows(want)


def inherited(parent: Perms, domid: int, privileged: bool) -> Perms:
    """A new node's permissions: its parent's, owned by the creator unless it is dom0."""
    if privileged:
        return parent
    rest = tuple(p for p in parent[1:] if p.domid != domid)
    return (Perm(domid, parent[0].rights), *rest)
