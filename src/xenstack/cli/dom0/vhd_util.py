"""``vhd-util``: blktap's VHD tool, for the subcommands plug-ins use, on xenstack's VHD library.

- ``query -n FILE [-v] [-s] [-p] [-f] [-d]``: virtual size in MiB, physical utilisation in
  bytes, the parent's path (or ``FILE has no parent``), ``hidden: N``, ``chain depth: N``,
  in that order, one per line.
- ``check -n FILE [-p]``: ``FILE is valid``, or ``FILE appears invalid; ...`` and status 1.
- ``create -n FILE -s MiB``, ``snapshot -n FILE -p PARENT``, ``modify -n FILE -p PARENT``.
- ``coalesce -n FILE``: merge FILE into its parent (xenstack's journaled coalesce, which
  also removes FILE).
- ``scan -f -m PATTERN``: ``vhd=NAME capacity=BYTES size=BYTES hidden=N parent=PATH|none``.

Errors go to stderr with a non-zero status, as vhd-util's do.
"""

from __future__ import annotations

import getopt
import glob
import os
import sys
from collections.abc import Callable

from ...storage.errors import VhdChainError, VhdError
from ...storage.vhd import DiskType, VhdLayer, coalesce, create_dynamic, set_parent
from ...storage.vhd.chain import open_chain, parent_path

MIB = 1 << 20
FOOTER = 512
HIDDEN_AT = 86  # blktap keeps its "hidden" flag in the footer byte after saved_state


class Usage(Exception):
    pass


def _opts(args: list[str], spec: str) -> dict[str, str]:
    try:
        pairs, _ = getopt.getopt(args, spec)
    except getopt.GetoptError as exc:
        raise Usage(str(exc)) from None
    return dict(pairs)


def _name(opts: dict[str, str]) -> str:
    if "-n" not in opts:
        raise Usage("-n name required")
    return opts["-n"]


def hidden(path: str) -> int:
    with open(path, "rb") as fh:
        fh.seek(-FOOTER, os.SEEK_END)
        return fh.read(FOOTER)[HIDDEN_AT]


def parent_of(layer: VhdLayer) -> str | None:
    if layer.disk_type != DiskType.DIFFERENCING:
        return None
    return parent_path(layer)


def query(args: list[str]) -> int:
    opts = _opts(args, "n:vspfdmS")
    name = _name(opts)
    with VhdLayer.open(name) as layer:
        out = []
        if "-v" in opts:
            out.append(str(layer.virtual_size // MIB))
        if "-s" in opts:
            out.append(str(layer.stat_size()))
        if "-p" in opts:
            parent = parent_of(layer)
            out.append(parent if parent is not None else f"{name} has no parent")
        if "-f" in opts:
            out.append(f"hidden: {hidden(name)}")
        if "-d" in opts:
            chain = open_chain(name)
            for other in chain:
                other.close()
            out.append(f"chain depth: {len(chain)}")
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def check(args: list[str]) -> int:
    opts = _opts(args, "n:pi")
    name = _name(opts)
    try:
        if "-p" in opts:
            for layer in open_chain(name):
                layer.close()
        else:
            VhdLayer.open(name).close()
    except (VhdError, VhdChainError, OSError) as exc:
        sys.stdout.write(f"{name} appears invalid; dumping metadata\n{exc}\n")
        return 1
    sys.stdout.write(f"{name} is valid\n")
    return 0


def create(args: list[str]) -> int:
    opts = _opts(args, "n:s:rS:")
    if "-s" not in opts or not opts["-s"].isdigit():
        raise Usage("-s size (MiB) required")
    create_dynamic(_name(opts), int(opts["-s"]) * MIB)
    return 0


def snapshot(args: list[str]) -> int:
    opts = _opts(args, "n:p:lmS:")
    if "-p" not in opts:
        raise Usage("-p parent required")
    create_dynamic(_name(opts), parent=opts["-p"])
    return 0


def modify(args: list[str]) -> int:
    opts = _opts(args, "n:p:s:P:zm")
    if "-p" not in opts:
        raise Usage("only -p (set the parent) is supported")
    set_parent(_name(opts), opts["-p"])
    return 0


def coalesce_cmd(args: list[str]) -> int:
    opts = _opts(args, "n:o:sp")
    coalesce(_name(opts))
    return 0


def scan(args: list[str]) -> int:
    opts = _opts(args, "fm:cl:pav")
    if "-m" not in opts:
        raise Usage("-m pattern required")
    for name in sorted(glob.glob(opts["-m"])):
        try:
            with VhdLayer.open(name) as layer:
                parent = parent_of(layer) if layer.disk_type == DiskType.DIFFERENCING else None
                line = (
                    f"vhd={name} capacity={layer.virtual_size} size={layer.stat_size()} "
                    f"hidden={hidden(name)} parent={parent or 'none'}"
                )
        except (VhdError, VhdChainError, OSError) as exc:
            line = f"vhd={name} scan-error=-22 error-message='{exc}'"
        sys.stdout.write(line + "\n")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "query": query,
    "check": check,
    "create": create,
    "snapshot": snapshot,
    "modify": modify,
    "coalesce": coalesce_cmd,
    "scan": scan,
}


def main(args: list[str]) -> int:
    if not args or args[0] not in COMMANDS:
        sys.stderr.write("usage: vhd-util COMMAND [OPTIONS]\nCOMMAND := { "
                         + " | ".join(COMMANDS) + " }\n")  # fmt: skip
        return 1
    try:
        return COMMANDS[args[0]](args[1:])
    except Usage as exc:
        sys.stderr.write(f"vhd-util {args[0]}: {exc}\n")
        return 22  # EINVAL, as vhd-util exits
    except (VhdError, VhdChainError, OSError, ValueError) as exc:
        sys.stderr.write(f"vhd-util {args[0]}: {exc}\n")
        return 1
