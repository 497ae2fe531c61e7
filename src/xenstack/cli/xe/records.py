"""CLI records: XenServer's field names and renderings over XenAPI records.

A field is rendered from a record fetched with ``get_all_records``/``get_record``; references
become uuids (or name labels) through a :class:`Resolver` that fetches what it needs in bulk.
"""

from __future__ import annotations

from .client import Client, XenApiError
from .fields_table import LISTS, RECORDS
from .output import CliError

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

NULL_REF = "OpaqueRef:NULL"
NID = "<not in database>"
BULK = 8  # more unresolved refs of one class than this: fetch the whole class at once

# renderings that differ from the wire value (XenServer's CLI capitalises some enums)
ENUM_TEXT: dict[str, dict[str, str]] = {
    "vbd_mode": {"RO": "ro", "RW": "rw"},
    "vdi_type": {"system": "System", "user": "User", "ephemeral": "Ephemeral",
                 "suspend": "Suspend", "crashdump": "Crashdump", "ha_statefile": "HA statefile",
                 "metadata": "Metadata", "redo_log": "Redo log", "pvs_cache": "PVS cache",
                 "cbt_metadata": "CBT metadata"},
    "bond_mode": {"balance-slb": "balance-slb", "active-backup": "active-backup"},
    "on_normal_exit": {"destroy": "Destroy", "restart": "Restart"},
    "on_crash_behaviour": {"destroy": "Destroy", "coredump_and_destroy": "Core dump and destroy",
                           "restart": "Restart", "coredump_and_restart": "Core dump and restart",
                           "preserve": "Preserve", "rename_restart": "Rename restart"},
    "on_softreboot_behaviour": {"destroy": "Destroy", "restart": "Restart",
                                "preserve": "Preserve", "soft_reboot": "Soft reboot"},
    "task_allowed_operations": {"cancel": "Cancel", "destroy": "Destroy"},
    "domain_type": {"pv_in_pvh": "pv-in-pvh"},
    "tristate": {"yes": "true", "no": "false"},
    "vm_operation": {"assert_operation_valid": "assertoperationvalid",
                     "data_source_op": "data_sources_op"},
    "protocol": {"vt100": "VT100", "rfb": "RFB", "rdp": "RDP"},
    "allocation_algorithm": {"depth_first": "depth-first", "breadth_first": "breadth-first"},
}  # fmt: skip


class Field:
    """One CLI field: see :mod:`.fields_table` for what each part means."""

    __slots__ = ("flags", "kind", "marker", "name", "ops", "path", "setter")

    def __init__(
        self,
        name: str,
        kind: str,
        path: str,
        marker: str,
        flags: str,
        setter: list[str] | None,
        ops: list[str],
    ) -> None:
        self.name, self.kind, self.path, self.marker, self.flags = name, kind, path, marker, flags
        self.setter = setter  # [XenAPI message, value conversion]
        self.ops = ops  # add, remove, set_in_map, set_map

    @property
    def hidden(self) -> bool:
        return "h" in self.flags

    @property
    def expensive(self) -> bool:
        return "e" in self.flags

    @property
    def label(self) -> str:
        tail = " [DEPRECATED]" if "d" in self.flags else ""
        return f"{self.name} ({self.marker.rjust(3)}){tail}"

    @property
    def is_set(self) -> bool:
        return self.marker.startswith("S")

    @property
    def is_map(self) -> bool:
        return self.marker.startswith("M")


class RecordKind:
    """One CLI class (``vm``, ``template``...): its XenAPI class, filters and columns."""

    def __init__(
        self,
        xe_name: str,
        api_class: str,
        filters: tuple[tuple[str, str], ...],
        columns: tuple[str, ...],
        fields: tuple[Field, ...],
    ) -> None:
        self.xe_name, self.api_class = xe_name, api_class
        self.filters, self.columns, self.fields = filters, columns, fields

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


def record_kind(xe_name: str) -> RecordKind | None:
    entry = LISTS.get(xe_name)
    if entry is None:
        return None
    rec_name, filters, columns = entry
    api_class, rows = RECORDS[rec_name]
    fields = tuple(Field(*row) for row in rows)
    return RecordKind(xe_name, api_class, filters, columns, fields)


def kind_for_class(api_class: str) -> RecordKind:
    """The CLI record of a XenAPI class (``VM`` gives the ``vm`` record)."""
    for xe_name, (rec_name, _, _) in LISTS.items():
        if RECORDS[rec_name][0] == api_class:
            found = record_kind(xe_name)
            assert found is not None
            return found
    raise CliError(f"no CLI record for class {api_class}")


class Resolver:
    """Fetches and caches records by reference, in bulk when many are wanted."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.cache: dict[str, dict[str, Any] | None] = {}
        self.whole: set[str] = set()

    def prefetch(self, cls: str, refs: Iterable[str]) -> None:
        missing = {r for r in refs if r not in self.cache and r != NULL_REF and r}
        if not missing or cls in self.whole:
            return
        if len(missing) > BULK:
            self.cache.update(self.client.call(f"{cls}.get_all_records"))
            self.whole.add(cls)
            missing -= self.cache.keys()
        for ref in missing:
            try:
                self.cache[ref] = self.client.call(f"{cls}.get_record", ref)
            except XenApiError:
                self.cache[ref] = None

    def record(self, cls: str, ref: str) -> dict[str, Any] | None:
        if ref == NULL_REF or not ref:
            return None
        if ref not in self.cache:
            self.prefetch(cls, [ref])
        return self.cache.get(ref)

    def uuid(self, cls: str, ref: str) -> str:
        rec = self.record(cls, ref)
        return str(rec["uuid"]) if rec and "uuid" in rec else NID

    def name(self, cls: str, ref: str) -> str:
        rec = self.record(cls, ref)
        return str(rec["name_label"]) if rec and "name_label" in rec else NID

    def refs_needed(self, fields: Iterable[Field], recs: Iterable[dict[str, Any]]) -> None:
        """Prefetch every linked record and referenced object ``fields`` need."""
        recs = list(recs)
        wanted: dict[str, set[str]] = {}
        for f in fields:
            if "@" in f.path:
                link, _, rest = f.path.partition("@")
                wanted.setdefault(rest.split(".")[0], set()).update(r.get(link, "") for r in recs)
        for cls, refs in wanted.items():
            self.prefetch(cls, refs)
        wanted = {}
        for f in fields:
            base, _, cls = f.kind.partition(":")
            if base not in ("uuid", "name", "emptyname", "uuids", "uuidmap") or not f.path:
                continue
            for r in recs:
                value = raw_value(self, f, r)
                if isinstance(value, str):
                    value = [value]
                elif isinstance(value, dict):
                    value = list(value.values())
                wanted.setdefault(cls, set()).update(value or [])
        for cls, refs in wanted.items():
            self.prefetch(cls, refs)


def raw_value(res: Resolver, f: Field, rec: dict[str, Any], path: str = "") -> Any:
    """The XenAPI value a field shows (following a link to a metrics record if needed)."""
    path = path or f.path
    if "@" not in path:
        return rec.get(path)
    link, _, rest = path.partition("@")
    cls, _, name = rest.partition(".")
    linked = res.record(cls, rec.get(link, NULL_REF))
    return None if linked is None else linked.get(name)


def enum_text(conv: str, value: Any) -> str:
    text = str(value)
    if conv == "vm_power_state":
        return text[:1].lower() + text[1:]
    return ENUM_TEXT.get(conv, {}).get(text, text)


def enum_from_text(conv: str, text: str) -> str:
    """The wire value for what a user typed (case-insensitive for renamed values)."""
    for wire, shown in ENUM_TEXT.get(conv, {}).items():
        if text.lower() in (shown.lower(), wire.lower()):
            return wire
    return text


def render(res: Resolver, f: Field, ref: str, rec: dict[str, Any]) -> str:
    """The text XenServer shows for field ``f`` of the object ``ref``."""
    base, _, arg = f.kind.partition(":")
    if base == "call":
        return _render_call(res, f, ref)
    if base == "?":
        return "<unknown>"
    if base == "srhost":
        return _sr_host(res, rec.get("PBDs") or [])
    if base == "emptyname":
        return "<EMPTY>" if rec.get("empty") else res.name(arg, rec.get(f.path) or NULL_REF)
    value = raw_value(res, f, rec)
    if value is None:
        return NID
    if base == "duplex":
        carrier = f.path.replace(".duplex", ".carrier")
        return "full" if value else "half" if raw_value(res, f, rec, carrier) else "unknown"
    return format_value(res, base, arg, value)


def format_value(res: Resolver, base: str, arg: str, value: Any) -> str:
    if base == "bool":
        return "true" if value else "false"
    if base == "float":
        return f"{float(value):.3f}"
    if base == "uuid":
        return res.uuid(arg, value)
    if base == "name":
        return res.name(arg, value)
    if base == "uuids":
        return "; ".join(res.uuid(arg, r) for r in value)
    if base == "map":
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    if base == "uuidmap":
        return "; ".join(f"{k}: {res.uuid(arg, v)}" for k, v in value.items())
    if base in ("semi", "comma"):
        sep = "; " if base == "semi" else ", "
        return sep.join(enum_text(arg, v) if arg else str(v) for v in value)
    if base == "ops":
        return "; ".join(enum_text(arg, v) for v in value.values())
    if base == "enum":
        return enum_text(arg, value)
    if base == "mbits":
        return f"{value} Mbit/s"
    return str(value)


def _sr_host(res: Resolver, pbds: list[str]) -> str:
    """An SR's host: the name of the one host it is attached to, or ``<shared>``."""
    if len(pbds) > 1:
        return "<shared>"
    if not pbds:
        return NID
    pbd = res.record("PBD", pbds[0])
    return NID if pbd is None else res.name("host", pbd.get("host", NULL_REF))


def _render_call(res: Resolver, f: Field, ref: str) -> str:
    method, _, inner = f.kind[5:].partition("|")
    try:
        value = res.client.call(method, ref)
    except XenApiError:
        value = [] if inner.startswith(("semi", "uuids")) else None
    if value is None:
        return "<unknown>"
    base, _, arg = inner.partition(":")
    return format_value(res, base, arg, value)


def set_members(res: Resolver, f: Field, ref: str, rec: dict[str, Any]) -> list[str]:
    """The members of a set field, each rendered as in the field's text."""
    text = render(res, f, ref, rec)
    sep = ", " if f.kind.startswith("comma") else "; "
    return text.split(sep) if text else []


def map_value(res: Resolver, f: Field, rec: dict[str, Any]) -> dict[str, str]:
    value = raw_value(res, f, rec)
    return dict(value) if isinstance(value, dict) else {}
