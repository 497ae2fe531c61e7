#!/usr/bin/env python3
"""Generate src/xenstack/cli/xe/fields_table.py from XAPI's CLI record definitions.

    python tools/gen_fields.py XEN_API_CHECKOUT [--check]

Reads ocaml/xapi-cli-server/records.ml and cli_operations.ml of a checkout of
xapi-project/xen-api, and the XenAPI declaration (xenstack.idl, itself generated from the
reference). The table holds only interface data (CLI field names, which XenAPI field each
shows, how the value is rendered and which XenAPI message changes it), so that ``xe`` prints
the same records as XenServer's without importing the whole IDL at start-up. It is sealed
with a digest of its text, like the other generated modules.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # genlib, beside this script
from genlib import arguments, sealed, write_or_check

from xenstack.idl.model import CLASS_BY_LOWER, CLASSES

OUT = Path(__file__).resolve().parent.parent / "src" / "xenstack" / "cli" / "xe" / "fields_table.py"
CLI_SOURCES = "ocaml/xapi-cli-server"

LABEL = re.compile(r"~(\w+)(?::|\b)")
RECORD = re.compile(r"^let (\w+)_record rpc session_id \w+ =", re.M)


def _balanced(text: str, i: int) -> int:
    """Index just past the expression that starts at ``text[i]``."""
    depth, n = 0, len(text)
    in_str = False
    while i < n:
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return i
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch.isspace() and depth == 0:
            return i
        i += 1
    return i


def _labels(chunk: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while True:
        m = LABEL.search(chunk, i)
        if not m:
            return out
        start = m.end()
        if chunk[m.end() - 1] != ":":
            out[m.group(1)] = "true"
            i = start
            continue
        end = _balanced(chunk, start)
        out[m.group(1)] = chunk[start:end]
        i = max(end, start + 1)


def _prefixes(classes: dict[str, Any]) -> list[tuple[str, str]]:
    pre = [(c[0].lower() + c[1:] + "_", c) for c in classes]
    return sorted(pre, key=lambda p: -len(p[0]))


def _api_field(text: str, classes: dict[str, Any], pre: list[tuple[str, str]]) -> tuple[str, str]:
    for m in re.finditer(r"\.(?:API\.)?([A-Za-z][A-Za-z0-9]*_\w+)", text):
        name = m.group(1)
        for p, cls in pre:
            if name.startswith(p) and name[len(p) :] in classes[cls].fields:
                return cls, name[len(p) :]
    return "", ""


def _conv(name: str) -> str:
    return name.removesuffix("_to_lowercase_string").removesuffix("_to_string")


def _get_kind(g: str) -> str:
    checks = [
        ("get_uuid_map_from_ref_map", "uuidmap"),
        ("get_uuids_from_refs", "uuids"),
        ("map_and_concat get_uuid_from_ref", "uuids"),
        ("get_uuid_from_ref", "uuid"),
        ("get_name_from_ref", "name"),
        ("get_from_map", "map"),
        ("string_of_bool", "bool"),
        ("Bool.to_string", "bool"),
        ("Date.to_rfc3339", "date"),
        ("string_of_float", "float"),
    ]
    for needle, kind in checks:
        if needle in g:
            return kind
    m = re.search(r"Record_util\.(\w+_to_(?:lowercase_)?string)", g)
    if "map_and_concat" in g or "concat_with" in g or "String.concat" in g:
        sep = "comma" if ("_compat" in g or "concat_with_comma" in g) else "semi"
        if m and "(fun (_, b)" in g:
            return f"ops:{_conv(m.group(1))}"
        if m:
            return f"{sep}:{_conv(m.group(1))}"
        return sep
    if m:
        return f"enum:{_conv(m.group(1))}"
    if "Int64.to_string" in g or "string_of_int" in g:
        return "int"
    return "str"


def _setter(s: str) -> tuple[str, str] | None:
    calls = [c for c in re.findall(r"Client\.(\w+)\.(\w+)", s) if not c[1].startswith("get_")]
    if not calls:
        return None
    mod, fn = calls[0]
    conv = "str"
    if m := re.search(r"Client\.(\w+)\.get_by_uuid", s):
        conv = "ref:" + m.group(1)
    elif "bytes_of_string" in s:
        conv = "bytes"
    elif "i64_of_string" in s or "Int64.of_string" in s:
        conv = "words_int" if "get_words" in s else "int"
    elif "bool_of_string" in s:
        conv = "bool"
    elif "float_of_string" in s:
        conv = "float"
    elif m := re.search(r"Record_util\.(\w+)_of_string", s):
        conv = "enum:" + m.group(1)
    elif "get_words" in s:
        conv = "words"
    if conv.startswith("ref:"):
        conv = "ref:" + CLASS_BY_LOWER.get(conv[4:].lower(), conv[4:])
    wire = _wire(f"{mod}.{fn}")
    return (wire, conv) if wire else None


def _method(s: str | None) -> str:
    if not s:
        return ""
    calls = [c for c in re.findall(r"Client\.(\w+)\.(\w+)", s) if not c[1].startswith("get_")]
    return _wire(f"{calls[0][0]}.{calls[0][1]}") if calls else ""


# fields computed from more than one object: (class, CLI name) -> (kind, path)
OVERRIDES = {
    ("SR", "host"): ("srhost", "PBDs"),
    ("VBD", "vdi-name-label"): ("emptyname:VDI", "VDI"),  # "<EMPTY>" for an empty drive
    ("PIF", "speed"): ("mbits", "metrics@PIF_metrics.speed"),  # "1000 Mbit/s"
    ("PIF", "duplex"): ("duplex", "metrics@PIF_metrics.duplex"),  # full, half or unknown
}


def _fallback(name: str, kind: str, g: str, call: list[Any], cdef: Any) -> tuple[str, str]:
    """A getter that reads no field of the record: a call on the object, or a guess."""
    guess = name.replace("-", "_")
    if guess in cdef.fields:
        return guess, _kind_of_type(cdef.fields[guess].type)
    if call and "query_data" not in g and call[0][1] not in ("get_all", "get_all_records"):
        mdef = _message(f"{call[0][0]}.{call[0][1]}")
        if mdef is not None:
            if kind in ("uuid", "name", "uuids"):
                kind = f"{kind}:{_ref_class(mdef.result)}"
            return "", f"call:{mdef.cls}.{mdef.name}|{kind}"
    return "", "?"


def _message(mod_fn: str) -> Any:
    mod, _, fn = mod_fn.partition(".")
    cls = CLASS_BY_LOWER.get(mod.lower())
    return CLASSES[cls].messages.get(fn) if cls else None


def _wire(mod_fn: str) -> str:
    """``Host.set_name_label`` (OCaml module) as the wire name ``host.set_name_label``."""
    if not mod_fn or mod_fn == "?":
        return ""
    mdef = _message(mod_fn)
    return mdef.wire_name if mdef is not None else ""


def _ref_class(ty: Any) -> str:
    while ty.kind in ("set", "map", "option"):
        ty = ty.of
    return str(ty.name) if ty.kind == "ref" else ""


def _kind_of_type(ty: Any) -> str:
    if ty.kind == "ref":
        return "uuid"
    if ty.kind == "set":
        return "uuids" if ty.of.kind == "ref" else "semi"
    return {"bool": "bool", "int": "int", "float": "float", "datetime": "date", "map": "map"}.get(
        ty.kind, "str"
    )


HELPERS = ("get_uuid_map_from_ref_map", "get_uuids_from_refs", "get_uuid_from_ref",
           "get_name_from_ref")  # fmt: skip


def _helper_arg(g: str, kind: str) -> str:
    """The part of a getter a reference helper reads (``if x.empty then ... else helper x.f``)."""
    if kind.split(":")[0] not in ("uuid", "name", "uuids", "uuidmap"):
        return g
    at = max(g.find(h) for h in HELPERS)
    return g[at:] if at >= 0 else g


def _field(chunk: str, main: str, classes: dict[str, Any], pre: Any) -> tuple[Any, ...] | None:
    lab = _labels(chunk)
    if "name" not in lab:
        return None
    name = lab["name"].strip('"')
    g = lab.get("get", "")
    kind = _get_kind(g)
    src, api = _api_field(_helper_arg(g, kind), classes, pre)
    if not src:
        src, api = _api_field(g, classes, pre)
    if "query_data_source" in g:  # a live data source, not a field of the record
        src, api = "", ""
    path = api
    if src and kind.split(":")[0] in ("uuid", "name", "uuids", "uuidmap"):
        kind = f"{kind}:{_ref_class(classes[src].fields[api].type)}"
    if src and src != main:
        links = [
            f
            for f, fd in classes[main].fields.items()
            if fd.type.kind == "ref" and fd.type.name == src
        ]
        path = f"{links[0]}@{src}.{api}" if links else ""
    call = re.findall(r"Client\.(\w+)\.(get_\w+)", g)
    if not path:
        path, kind = _fallback(name, kind, g, call, classes[main])
    kind, path = OVERRIDES.get((main, name), (kind, path))
    flags = "".join(
        f
        for f, k in (
            ("h", "hidden"),
            ("e", "expensive"),
            ("d", "deprecated"),
            ("i", "case_insensitive"),
        )
        if lab.get(k) == "true"
    )
    is_set = "get_set" in lab
    is_map = "get_map" in lab
    if is_set:
        marker = "SRW" if "add_to_set" in lab else "SRO"
    elif is_map:
        marker = "MRW" if "add_to_map" in lab else "MRO"
    else:
        marker = "RW" if "set" in lab else "RO"
    setter = _setter(lab["set"]) if "set" in lab else None
    ops = (
        _method(lab.get("add_to_map") or lab.get("add_to_set")),
        _method(lab.get("remove_from_map") or lab.get("remove_from_set")),
        _method(lab.get("set_in_map")),
        _method(lab.get("set_map")),
    )
    return (name, kind, path, marker, flags, setter, ops)


def _known(row: tuple[Any, ...]) -> bool:
    """Drop fields this API version lacks; keep computed expensive ones (shown as unknown)."""
    return row[1] != "?" or "e" in row[4]


def table(src_dir: Path) -> dict[str, Any]:
    """The table's data, read from the CLI sources in ``src_dir`` (ocaml/xapi-cli-server)."""
    pre = _prefixes(CLASSES)
    lower = {c.lower(): c for c in CLASSES}
    text = (src_dir / "records.ml").read_text()
    heads = list(RECORD.finditer(text))
    out: dict[str, tuple[str, list[Any]]] = {}
    for i, h in enumerate(heads):
        body = text[h.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        m = re.search(r"Client\.(\w+)\.get_record", body)
        if not m or m.group(1).lower() not in lower:
            continue
        main = lower[m.group(1).lower()]
        fields_at = body.find("fields=")
        chunks = body[fields_at:].split("make_field")[1:]
        rows = [f for c in chunks if (f := _field(c, main, CLASSES, pre)) and _known(f)]
        out[h.group(1)] = (main, rows)
    return {
        "records": {rec: [cls, rows] for rec, (cls, rows) in out.items()},
        "lists": {name: [rec, flt, cols] for name, rec, flt, cols in _lists(src_dir) if rec in out},
    }


def generate(src_dir: Path) -> str:
    return render(table(src_dir))


def _lists(src_dir: Path) -> list[tuple[str, str, Any, Any]]:
    text = (src_dir / "cli_operations.ml").read_text()
    start = text.index("let gen_cmds rpc session_id")
    body = text[start : text.index("let message_create", start)]
    out = []
    for m in re.finditer(
        r"mk\s.*?get_by_uuid (\w+)_record\s+\"([\w-]+)\"\s*(\[.*?\])\s*(\[.*?\])", body, re.S
    ):
        filters = re.findall(r'\("([\w-]+)", "(\w+)"\)', m.group(3))
        cols = re.findall(r'"([\w-]+)"', m.group(4))
        out.append((m.group(2), m.group(1), tuple(filters), tuple(cols)))
    return out


def render(data: dict[str, Any]) -> str:
    """The table as one JSON string literal (cheap to compile when no .pyc can be written),
    sealed with its digest."""
    text = json.dumps(data, separators=(",", ":"))
    text = text.replace("]],", "]],\n").replace("],[", "],\n[")
    return sealed(
        "# ruff: noqa: E501\n"
        '"""CLI records: generated by tools/gen_fields.py from the XenServer CLI; do not edit\n'
        "(a test checks the digest).\n\n"
        "records: record name -> [XenAPI class, fields]; a field is [name, getter kind, XenAPI\n"
        "field path, marker, flags, setter or null, [add, remove, set_in_map, set_map]].\n"
        'lists: xe class name -> [record, default filters, default list columns].\n"""\n\n'
        "from __future__ import annotations\n\nimport json\n\n"
        "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from typing import Any\n\n"
        f'DATA: Any = json.loads(r"""{text}""")\n\n'
        "RECORDS: dict[str, tuple[str, list[Any]]] = {k: (v[0], v[1]) for k, v in "
        'DATA["records"].items()}\n'
        "LISTS: dict[str, tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]]] = {\n"
        "    k: (v[0], tuple((a, b) for a, b in v[1]), tuple(v[2])) for k, v in "
        'DATA["lists"].items()\n}\n'
    )


def _reference_api(reference: list[dict[str, Any]]) -> tuple[dict[str, dict[str, str]], set[str]]:
    """Class -> field -> type, and every wire message name, of the published XenAPI."""
    fields = {c["name"]: {f["name"]: f["type"] for f in c["fields"]} for c in reference}
    messages = {f"{c['name']}.{m['name']}" for c in reference for m in c["messages"]}
    return fields, messages


def _path_problem(fields: dict[str, dict[str, str]], cls: str, path: str) -> str | None:
    """``field`` of ``cls``, or ``link@Class.field`` through a reference field of ``cls``."""
    if "@" not in path:
        return None if path in fields[cls] else f"{cls} has no field {path}"
    link, _, target = path.partition("@")
    tcls, _, tfield = target.partition(".")
    if fields[cls].get(link) != f"{tcls} ref":
        return f"{cls}.{link} is not a {tcls} ref"
    return None if tfield in fields.get(tcls, {}) else f"{tcls} has no field {tfield}"


def reference_problems(data: dict[str, Any], reference: list[dict[str, Any]]) -> list[str]:
    """What in the table the published XenAPI does not have: its classes, the fields each CLI
    field shows (directly or through a reference), the classes of references, the messages
    that set, add, remove or compute a value."""
    fields, messages = _reference_api(reference)
    out = []
    for rec, (cls, rows) in data["records"].items():
        if cls not in fields:
            out.append(f"{rec}: no class {cls}")
            continue
        for name, kind, path, _marker, _flags, setter, ops in rows:
            where = f"{rec}.{name}"
            if path and (problem := _path_problem(fields, cls, path)):
                out.append(f"{where}: {problem}")
            head, _, arg = kind.partition(":")
            if (
                head in ("uuid", "uuids", "name", "uuidmap", "emptyname")
                and arg
                and arg not in fields
            ):
                out.append(f"{where}: no class {arg}")
            if head == "call" and arg.partition("|")[0] not in messages:
                out.append(f"{where}: no message {arg.partition('|')[0]}")
            called = [setter[0]] if setter else []
            if setter and setter[1].startswith("ref:") and setter[1][4:] not in fields:
                out.append(f"{where}: no class {setter[1][4:]}")
            out += [f"{where}: no message {m}" for m in [*called, *ops] if m and m not in messages]
    for name, (rec, _filters, _columns) in data["lists"].items():
        if rec not in data["records"]:
            out.append(f"list {name}: no record {rec}")
    return out


def main() -> int:
    args = arguments()
    return write_or_check(OUT, generate(Path(args[0]) / CLI_SOURCES))


if __name__ == "__main__":
    sys.exit(main())
