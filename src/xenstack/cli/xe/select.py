"""Filtering records on ``field=value`` parameters, and the ``vm=``/``host=``/``sr=`` selectors."""

from __future__ import annotations

from .context import STDPARAMS, Ctx
from .output import CliError
from .records import Field, RecordKind, Resolver, kind_for_class, map_value, render, set_members

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    Row = tuple[str, dict[str, Any]]


def field_type(kind: RecordKind, key: str) -> tuple[str, Field]:
    """How ``key`` filters: ("normal"|"map"|"set", field), as XenServer's CLI decides."""
    f = kind.field(key)
    if f is not None:
        return "normal", f
    if ":" in key:
        stem = key[: key.index(":")]
        f = kind.field(stem)
        if f is None:
            raise CliError(f"Unknown field '{key}'")
        if f.is_set:
            return "set", f
        if f.is_map:
            return "map", f
        raise CliError(f"Field '{f.name}' is not a set or map")
    for want in ("map", "set"):
        cands = [x for x in kind.fields if (x.is_map if want == "map" else x.is_set)]
        for x in sorted(cands, key=lambda x: -len(x.name)):
            if key.startswith(x.name + "-"):
                return want, x
    raise CliError(f"Unknown field '{key}'")


def filter_rows(
    res: Resolver, kind: RecordKind, rows: list[Row], filters: Iterable[tuple[str, str]]
) -> list[Row]:
    for key, value in filters:
        if not rows:
            return []
        how, f = field_type(kind, key)
        res.refs_needed([f], (rec for _, rec in rows))
        rows = [row for row in rows if _matches(res, how, f, key, value, row)]
    return rows


def _matches(res: Resolver, how: str, f: Field, key: str, value: str, row: Row) -> bool:
    ref, rec = row
    ci = "i" in f.flags
    if how == "normal":
        got = render(res, f, ref, rec)
        return got.lower() == value.lower() if ci else got == value
    sub = key[len(f.name) + 1 :]
    if how == "set":
        if sub != "contains":
            raise CliError("Invalid syntax for set filtering (should be set-param:contains=key)")
        members = set_members(res, f, ref, rec)
        return value.lower() in (m.lower() for m in members) if ci else value in members
    mapping = map_value(res, f, rec)
    if ci:
        mapping = {k.lower(): v.lower() for k, v in mapping.items()}
        sub, value = sub.lower(), value.lower()
    return mapping.get(sub) == value


def user_filters(params: list[tuple[str, str]], ignore: Iterable[str]) -> list[tuple[str, str]]:
    skip = STDPARAMS | set(ignore)
    return [(k, v) for k, v in params if k.split(":")[0] not in skip]


def select(
    ctx: Ctx,
    api_class: str,
    name_key: str,
    ignore: Iterable[str],
    extra: Iterable[tuple[str, str]] = (),
) -> list[Row]:
    """The objects of ``api_class`` the command line picks (``vm=`` matches name or uuid)."""
    kind = kind_for_class(api_class)
    rows: list[Row] = list(ctx.call(f"{api_class}.get_all_records").items())
    wanted = ctx.get(name_key)
    if wanted is not None:
        rows = [
            r
            for r in rows
            if wanted in (r[1].get("uuid"), r[1].get("name_label"), r[1].get("hostname", None))
        ]
    filters = [*extra, *user_filters(ctx.params, [*ignore, name_key])]
    try:
        return filter_rows(ctx.res, kind, rows, filters)
    except CliError as err:
        if str(err).startswith("Unknown field"):
            key = str(err).split("'")[1]
            raise CliError(
                f"Parameter '{key}' is not a field of the {api_class} class. "
                f"Failed to select {api_class} for operation."
            ) from None
        raise


def select_vms(
    ctx: Ctx, ignore: Iterable[str], templates: bool = False, control: bool = False
) -> list[Row]:
    extra = [] if templates else [("is-a-template", "false")]
    if not control:
        extra.append(("is-control-domain", "false"))
    return select(ctx, "VM", "vm", ignore, extra)


def one_or_many(ctx: Ctx, rows: list[Row], what: str, multiple: bool = True) -> list[Row]:
    """Apply XenServer's rules: none is an error, several need ``--multiple``."""
    if not rows:
        raise CliError(f"No matching {what} found")
    if len(rows) == 1:
        return rows
    if multiple and ctx.flag("multiple"):
        return rows
    if not multiple:
        raise CliError(
            f"Multiple matches {what} found. Operation can only be performed "
            f"on one {what[:-1]} at a time"
        )
    raise CliError(f"Multiple matches {what} found. --multiple required to complete the operation")
