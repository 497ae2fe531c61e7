"""``python3 -m xenstack.cli.dom0 TOOL ARGS...``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: python3 -m xenstack.cli.dom0 TOOL [ARGS...]\n")
        return 2
    tool, args = argv[0], argv[1:]
    if tool == "vhd-util":
        from .vhd_util import main as vhd_main

        return vhd_main(args)
    from .xenstore_tools import TOOLS

    if tool not in TOOLS:
        sys.stderr.write(f"no such dom0 tool: {tool}\n")
        return 2
    status: int = TOOLS[tool](args)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
