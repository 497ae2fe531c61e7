"""``xe help``: the usage text, one command's parameters, or every command."""

from __future__ import annotations

from .output import Printer
from .registry import Command, load_commands

SELECTOR_NOTE = {
    "vm": " Pick VMs with field=value filters over 'xe vm-list params=all' fields; 'vm=' "
    "matches a name-label or a uuid. Several matches need --multiple.",
    "host": " Pick hosts with field=value filters; 'host=' matches a uuid, name-label or "
    "hostname. Several matches need --multiple where allowed.",
    "sr": " Pick SRs with field=value filters; 'sr=' matches a name-label or a uuid.",
}

USAGE = """Usage:
  {argv0} <command>
    [ -s <server> ]            the toolstack's address
    [ -p <port> ]              its port
    [ -u <username> -pw <password> | -pwf <password file> ]
                               who you are (password, or a file holding user and password)
    [ --nossl ]                do not use TLS
    [ --debug ]                print debugging output
    [ <other arguments> ... ]  the command's parameters (key=value, --flag)

Help on one command:
  {argv0} help <command>
"""


def all_commands() -> dict[str, Command]:
    """Operation commands plus the generic ones of every class."""
    from . import generic
    from .fields_table import LISTS
    from .records import record_kind

    table = dict(load_commands())
    for xe_name in LISTS:
        kind = record_kind(xe_name)
        assert kind is not None
        for op in generic.PARAM_OPS:
            if generic._offers(kind, op):
                name = f"{xe_name}-{op}"
                table[name] = Command(
                    name,
                    generic.REQUIRED[op],
                    _optional(kind, op),
                    generic_help(xe_name, op),
                    lambda ctx: None,
                    frozenset(
                        {"standard"} if op == "list" and xe_name in ("vm", "sr", "network") else ()
                    ),
                )
    return table


def _optional(kind: object, op: str) -> tuple[str, ...]:
    from .records import RecordKind

    assert isinstance(kind, RecordKind)
    visible = [f for f in kind.fields if not f.hidden]
    if op == "list":
        return (
            "params",
            *(f.name for f in visible),
            *(f"{f.name}:contains" for f in visible if f.is_set),
        )
    if op == "param-get":
        return ("param-key",)
    if op == "param-set":
        return (
            *(f.name for f in visible if f.setter),
            *(f"{f.name}:" for f in visible if f.ops[0] or f.ops[2] or f.ops[3]),
        )
    if op == "param-add":
        return ("param-key",)
    return ()


def generic_help(xe_name: str, op: str) -> str:
    texts = {
        "list": f"List the {xe_name} objects, filtered by any field=value given "
        "(map:key=value for map fields); params= picks the columns.",
        "param-list": "Show every parameter of the object with this uuid.",
        "param-get": "Print one parameter of the object (param-key= for one key of a map).",
        "param-set": "Set parameters of the object; map-param:key=value sets one map key.",
        "param-add": "Add members to a set (param-key=) or key=value pairs to a map.",
        "param-remove": "Remove a member of a set or a key of a map.",
        "param-clear": "Empty a set or map parameter, or clear a writable one.",
    }
    return texts[op]


def _make_list(names: list[str]) -> list[str]:
    indent, lines, cur = "    ", [], ""
    for name in names:
        if not cur:
            cur = indent + name
        elif len(cur) + len(name) > 74:
            lines.append(cur)
            cur = indent + name
        else:
            cur += ", " + name
    lines.append(cur or indent)
    return lines


def show_help(printer: Printer, argv0: str, params: list[tuple[str, str]]) -> None:
    table = all_commands()
    asked = [
        k
        for k, _ in params
        if k not in ("server", "username", "password", "port", "minimal", "all")
    ]
    if asked:
        for name in asked:
            _one(printer, table, name)
        return
    visible = sorted(n for n, c in table.items() if "hidden" not in c.flags)
    head = USAGE.format(argv0=argv0)
    if any(k == "all" and v == "true" for k, v in params):
        if printer.minimal:
            printer.lines(visible)
            return
        hosts = [n for n in visible if n.startswith("host-")]
        vms = [n for n in visible if n.startswith("vm-")]
        rest = [n for n in visible if n not in hosts and n not in vms]
        printer.lines([head + "\nAll commands\n------------\n"])
        printer.lines(
            _make_list(hosts)
            + _make_list([""])
            + _make_list(vms)
            + _make_list([""])
            + _make_list(rest)
        )
        return
    common = [n for n in visible if "standard" in table[n].flags]
    if printer.minimal:
        printer.lines(common)
        return
    printer.lines(
        [head + f"\nEvery command:\n  {argv0} help --all\n\nCommon commands\n---------------\n"]
    )
    printer.lines(_make_list(common))


def _one(printer: Printer, table: dict[str, Command], name: str) -> None:
    cmd = table.get(name)
    if cmd is None:
        printer.lines([f"Unknown command '{name}'"])
        return
    optn = list(cmd.optn)
    note = ""
    for sel in ("vm", "host", "sr"):
        if sel in cmd.flags:
            optn.append(f"<{sel}-selectors>")
            note = SELECTOR_NOTE[sel]
    printer.table(
        [
            [
                ("command name        ", name),
                ("reqd params     ", ", ".join(cmd.reqd)),
                ("optional params ", ", ".join(optn)),
                ("description     ", cmd.help + note),
            ]
        ]
    )
