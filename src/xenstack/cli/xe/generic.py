"""The commands every class gets: ``<class>-list`` and ``<class>-param-*``."""

from __future__ import annotations

from .client import XenApiError
from .context import STDPARAMS, Ctx, parse_bool
from .output import CliError
from .records import Field, RecordKind, enum_from_text, render
from .select import field_type, filter_rows

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .select import Row

PARAM_OPS = ("list", "param-list", "param-get", "param-set", "param-add", "param-remove",
             "param-clear")  # fmt: skip


def printable(
    res: Any, fields: list[Field], ref: str, rec: dict[str, Any], listing: bool
) -> list[tuple[str, str]]:
    out = []
    for f in fields:
        value = "<expensive field>" if listing and f.expensive else render(res, f, ref, rec)
        out.append((f.label, value))
    return out


def chosen_fields(ctx: Ctx, kind: RecordKind) -> list[Field]:
    wanted = ctx.get("params")
    names: list[str] = (
        list(kind.columns) if wanted is None else ([] if wanted == "all" else wanted.split(","))
    )
    visible = [f for f in kind.fields if not f.hidden]
    return visible if not names else [f for f in visible if f.name in names]


def cmd_list(ctx: Ctx, kind: RecordKind) -> None:
    rows: list[Row] = list(ctx.call(f"{kind.api_class}.get_all_records").items())
    filters = [
        (k, v)
        for k, v in ctx.params
        if k not in STDPARAMS and k != "params" and not k.startswith("database:")
    ]
    defaults = list(kind.filters)
    if kind.xe_name == "vm" and not any(k == "is-control-domain" for k, _ in filters):
        defaults.append(("is-control-domain", "false"))  # vm-list shows guests only
    picked = filter_rows(ctx.res, kind, rows, [*defaults, *filters])
    if ctx.flag("all"):
        picked = rows
    fields = chosen_fields(ctx, kind)
    ctx.res.refs_needed([f for f in fields if not f.expensive], (rec for _, rec in picked))
    ctx.printer.table([printable(ctx.res, fields, ref, rec, True) for ref, rec in picked])


def _object(ctx: Ctx, kind: RecordKind) -> tuple[str, dict[str, Any]]:
    ref = ctx.ref_by_uuid(kind.api_class, ctx.req("uuid"))
    return ref, ctx.call(f"{kind.api_class}.get_record", ref)


def _lookup(kind: RecordKind, name: str) -> Field:
    f = kind.field(name)
    if f is None:
        raise XenApiError("Missing parameter", [name])
    return f


def cmd_param_list(ctx: Ctx, kind: RecordKind) -> None:
    ref, rec = _object(ctx, kind)
    fields = [f for f in kind.fields if not f.hidden]
    ctx.res.refs_needed(fields, [rec])
    ctx.printer.table([printable(ctx.res, fields, ref, rec, False)])


def cmd_param_get(ctx: Ctx, kind: RecordKind) -> None:
    ref, rec = _object(ctx, kind)
    f = _lookup(kind, ctx.req("param-name"))
    key = ctx.get("param-key")
    if key is not None and f.is_map:
        from .records import map_value

        mapping = map_value(ctx.res, f, rec)
        if key not in mapping:
            raise CliError(f"Key {key} not found in map")
        ctx.printer.lines([mapping[key]])
        return
    ctx.printer.lines([render(ctx.res, f, ref, rec)])


def convert(ctx: Ctx, name: str, conv: str, text: str) -> Any:
    """A typed XenAPI value from what the user typed for a settable field."""
    if conv == "int":
        try:
            return int(text)
        except ValueError:
            raise CliError(f"Failed to parse parameter '{name}': expecting an integer") from None
    if conv == "bytes":
        return parse_bytes(name, text)
    if conv == "float":
        try:
            return float(text)
        except ValueError:
            raise CliError(f"Parameter {name} must be a floating-point number") from None
    if conv == "bool":
        return parse_bool(name, text)
    if conv.startswith("ref:"):
        return ctx.ref_by_uuid(conv[4:], text) if text else "OpaqueRef:NULL"
    if conv.startswith("enum:"):
        return enum_from_text(conv[5:], text)
    if conv in ("words", "words_int"):
        words = [w for w in text.split(",") if w] if text else []
        return [int(w) for w in words] if conv == "words_int" else words
    return text


def parse_bytes(name: str, text: str) -> int:
    """Sizes like ``512MiB``, ``2GiB`` or plain bytes, as XenServer's CLI accepts them."""
    units = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
             "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
             "KB": 1000, "MB": 10**6, "GB": 10**9, "TB": 10**12}  # fmt: skip
    digits = text.rstrip("KMGTiB")
    try:
        return int(digits) * units[text[len(digits) :]]
    except (ValueError, KeyError):
        raise CliError(f"Failed to parse parameter '{name}': expecting a size") from None


def cmd_param_set(ctx: Ctx, kind: RecordKind) -> None:
    ref, rec = _object(ctx, kind)
    whole_maps: dict[str, dict[str, str]] = {}
    for key, value in ctx.params:
        if key == "uuid" or key in STDPARAMS:
            continue
        how, f = field_type(kind, key)
        if how == "set":
            raise CliError("Cannot param-set on set fields")
        if how == "map":
            _set_in_map(ctx, f, ref, rec, key[len(f.name) + 1 :], value, whole_maps)
            continue
        if f.setter is None:
            if f.ops[0]:
                raise CliError(f"Field '{key}' is a map or set. use the 'name:key=value' syntax.")
            raise CliError(f"Field '{key}' is read-only.")
        method, conv = f.setter
        ctx.call(method, ref, convert(ctx, key, conv, value))
    for method, pairs in whole_maps.items():
        ctx.call(method, ref, pairs)


def _set_in_map(
    ctx: Ctx,
    f: Field,
    ref: str,
    rec: dict[str, Any],
    key: str,
    value: str,
    whole_maps: dict[str, dict[str, str]],
) -> None:
    add, remove, set_in_map, set_map = f.ops
    if set_in_map:
        ctx.call(set_in_map, ref, key, value)
    elif set_map:
        whole_maps.setdefault(set_map, {})[key] = value
    elif not add:
        raise CliError(f"Map field '{f.name}' is read-only.")
    else:
        current = rec.get(f.path) or {}
        if key in current:
            ctx.call(remove, ref, key)
        ctx.call(add, ref, key, value)


def cmd_param_add(ctx: Ctx, kind: RecordKind) -> None:
    ref, _ = _object(ctx, kind)
    f = _lookup(kind, ctx.req("param-name"))
    add = f.ops[0]
    if not add:
        raise CliError(
            "Parameter is read-only"
            if f.is_set or f.is_map
            else "Can only add to parameters of type Set or Map"
        )
    if f.is_set:
        key = ctx.get("param-key")
        if key is None:
            raise CliError(
                "When adding a key to a set, use the syntax: *-param-add "
                "param-name=<name> param-key=<key>"
            )
        ctx.call(add, ref, key)
        return
    skip = STDPARAMS | {"uuid", "param-name", "param-key"}
    for k, v in ctx.params:
        if k not in skip:
            ctx.call(add, ref, k, v)


def cmd_param_remove(ctx: Ctx, kind: RecordKind) -> None:
    ref, rec = _object(ctx, kind)
    f = _lookup(kind, ctx.req("param-name"))
    key = ctx.req("param-key")
    remove = f.ops[1]
    if not (f.is_set or f.is_map):
        raise CliError("Can only remove from parameters of type Set or Map")
    if not remove:
        raise CliError("Cannot remove parameters from read-only map")
    present = key in (rec.get(f.path) or ())
    if not present:
        what = "set" if f.is_set else "map"
        raise CliError(
            f"Key {key} is not in the {what}" if f.is_set else f"Key {key} is not in {what}"
        )
    ctx.call(remove, ref, key)


def cmd_param_clear(ctx: Ctx, kind: RecordKind) -> None:
    ref, rec = _object(ctx, kind)
    f = _lookup(kind, ctx.req("param-name"))
    _add, remove, _, set_map = f.ops
    if f.is_set and remove:
        for member in list(rec.get(f.path) or []):
            ctx.call(remove, ref, member)
    elif f.is_map and set_map:
        ctx.call(set_map, ref, {})
    elif f.is_map and remove:
        for key in list(rec.get(f.path) or {}):
            ctx.call(remove, ref, key)
    elif f.setter is not None:
        method, conv = f.setter
        try:
            ctx.call(method, ref, convert(ctx, f.name, conv, ""))
        except CliError:
            raise CliError("Cannot clear this parameter") from None
    else:
        raise CliError("Can only clear RW parameters")


HANDLERS: dict[str, Callable[[Ctx, RecordKind], None]] = {
    "list": cmd_list,
    "param-list": cmd_param_list,
    "param-get": cmd_param_get,
    "param-set": cmd_param_set,
    "param-add": cmd_param_add,
    "param-remove": cmd_param_remove,
    "param-clear": cmd_param_clear,
}

REQUIRED = {
    "list": (),
    "param-list": ("uuid",),
    "param-get": ("uuid", "param-name"),
    "param-set": ("uuid",),
    "param-add": ("uuid", "param-name"),
    "param-remove": ("uuid", "param-name", "param-key"),
    "param-clear": ("uuid", "param-name"),
}


def split_generic(cmd: str) -> tuple[RecordKind, str] | None:
    """``vm-param-get`` → (the vm record, "param-get"), or None if not generic."""
    from .records import record_kind

    for op in PARAM_OPS:
        suffix = "-" + op
        if cmd.endswith(suffix):
            kind = record_kind(cmd[: -len(suffix)])
            if kind is not None and _offers(kind, op):
                return kind, op
    return None


def _offers(kind: RecordKind, op: str) -> bool:
    visible = [f for f in kind.fields if not f.hidden]
    if op == "param-set":
        return any(f.setter or f.ops[0] or f.ops[2] or f.ops[3] for f in visible)
    if op in ("param-add", "param-remove"):
        return any(f.ops[0] for f in visible)
    if op == "param-clear":
        return any(f.setter or f.is_set or f.is_map for f in visible)
    return True
