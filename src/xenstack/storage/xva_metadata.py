"""``ova.xml``, the metadata of an XVA: a ``<value><struct>`` with ``version`` and ``objects``.

Each object is ``{class, id, snapshot}``: the object's full record with every reference
replaced by the export's own ids (``Ref:<n>``) or by the null reference when the object is
not part of the export, as XAPI writes it. Reading turns the document back into typed
records (ints arrive as strings, as XAPI writes them), checked against the IDL.
"""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.parsers.expat import ExpatError

from ..core.validate import coerce
from ..core.xmlrpc_values import encode_value
from ..errors import ApiError
from ..idl.model import CLASSES
from ..idl.types import NULL_REF, DateTime, remap_refs

EXPORT_VSN = 2
EPOCH = "19700101T00:00:00Z"
CLEARED: dict[str, Any] = {"current_operations": {}, "allowed_operations": []}


class Database(Protocol):
    """The rows an export's metadata is read from (``db.store.Database``; format code below it)."""

    def get(self, cls: str, ref: str) -> Any: ...

    def exists(self, cls: str, ref: str) -> bool: ...


@dataclass
class Selection:
    """The objects of one export: internal ref -> export id, and classes in output order."""

    ids: dict[str, str] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)

    def add(self, cls: str, ref: str) -> None:
        if ref != NULL_REF and ref not in self.ids:
            self.ids[ref] = f"Ref:{len(self.ids)}"
            self.order.append((cls, ref))


def select_vm(db: Database, vm: str) -> Selection:
    """The VM, its VIFs and their networks, its VBDs, their VDIs and the VDIs' SRs."""
    chosen = Selection()
    chosen.add("VM", vm)
    row = db.get("VM", vm)
    for vif in row["VIFs"]:
        if db.exists("VIF", vif):
            chosen.add("VIF", vif)
            chosen.add("network", db.get("VIF", vif)["network"])
    for vbd in row["VBDs"]:
        if db.exists("VBD", vbd):
            chosen.add("VBD", vbd)
            vbd_row = db.get("VBD", vbd)
            if not vbd_row["empty"] and db.exists("VDI", vbd_row["VDI"]):
                chosen.add("VDI", vbd_row["VDI"])
                chosen.add("SR", db.get("VDI", vbd_row["VDI"])["SR"])
    return chosen


def _snapshot(db: Database, cls: str, ref: str, ids: dict[str, str]) -> dict[str, Any]:
    row = db.get(cls, ref)
    fields = CLASSES[cls].fields
    record = {
        name: remap_refs(fdef.type, row[name], ids) for name, fdef in fields.items() if name in row
    }
    record.update({k: v for k, v in CLEARED.items() if k in record})
    if cls == "VM":
        record.update(
            power_state="Halted",
            suspend_VDI=NULL_REF,
            is_a_snapshot=False,
            snapshot_of=NULL_REF,
            snapshots=[],
            snapshot_time=DateTime(EPOCH),
            transportable_snapshot_id="",
            parent=NULL_REF,
        )
    elif cls in ("VBD", "VIF"):
        record["currently_attached"] = False
    elif cls == "SR":
        record["PBDs"] = []
    elif cls == "network":
        record["PIFs"] = []
    return record


def _version(db: Database, host: str) -> dict[str, Any]:
    row = db.get("host", host) if db.exists("host", host) else {}
    software = row.get("software_version", {})
    return {
        "hostname": row.get("hostname", ""),
        "date": software.get("date", ""),
        "product_version": software.get("product_version", ""),
        "product_brand": software.get("product_brand", ""),
        "build_number": software.get("build_number", ""),
        "xapi_major": row.get("API_version_major", 2),
        "xapi_minor": row.get("API_version_minor", 21),
        "export_vsn": EXPORT_VSN,
    }


def _i4(value: int) -> str:
    return f"<value><i4>{int(value)}</i4></value>"


def encode(db: Database, chosen: Selection, host: str) -> bytes:
    """The ``ova.xml`` document of the selected objects."""
    out = ["<value><struct><member><name>version</name><value><struct>"]
    for key, value in _version(db, host).items():
        out.append(f"<member><name>{key}</name>")
        out.append(_i4(value) if type(value) is int else "")
        if type(value) is not int:
            encode_value(str(value), out)
        out.append("</member>")
    out.append("</struct></value></member><member><name>objects</name><value><array><data>")
    for cls, ref in chosen.order:
        obj = {"class": cls, "id": chosen.ids[ref], "snapshot": _snapshot(db, cls, ref, chosen.ids)}
        encode_value(obj, out)
    out.append("</data></array></value></member></struct></value>")
    return "".join(out).encode()


# ---- reading -----------------------------------------------------------------------------


@dataclass
class ExportedObject:
    cls: str
    id: str
    record: dict[str, Any]


@dataclass
class Header:
    version: dict[str, Any]
    objects: list[ExportedObject]

    def find(self, ext_id: str) -> ExportedObject | None:
        return next((o for o in self.objects if o.id == ext_id), None)

    def of_class(self, cls: str) -> list[ExportedObject]:
        return [o for o in self.objects if o.cls == cls]


def _import_error(reason: str) -> ApiError:
    return ApiError("IMPORT_ERROR", [reason])


def _parse_value(text: bytes) -> Any:
    if b"<!DOCTYPE" in text.upper() or b"<!ENTITY" in text.upper():
        raise _import_error("ova.xml: document type declarations are not accepted")
    body = b"<methodResponse><params><param>" + text + b"</param></params></methodResponse>"
    try:
        (value,), _ = xmlrpc.client.loads(body, use_builtin_types=False)
    except (ExpatError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise _import_error(f"ova.xml is not a valid XML-RPC value: {exc}") from None
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, xmlrpc.client.DateTime):
        text = str(value.value)
        return DateTime(text if text.endswith("Z") else text + "Z")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(cls: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Known fields converted to their IDL types; unknown fields and bad values dropped."""
    fields = CLASSES[cls].fields
    out: dict[str, Any] = {}
    for name, value in raw.items():
        fdef = fields.get(name)
        if fdef is None:
            continue
        try:
            out[name] = coerce(fdef.type, value, name)
        except ApiError:
            continue
    return out


def decode(text: bytes) -> Header:
    """Parse ``ova.xml``; IMPORT_ERROR [reason] if it is not an export's metadata."""
    doc = _parse_value(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        raise _import_error("ova.xml has no objects")
    version = doc.get("version")
    objects: list[ExportedObject] = []
    for obj in doc["objects"]:
        if not isinstance(obj, dict) or not isinstance(obj.get("snapshot"), dict):
            raise _import_error("ova.xml holds a malformed object")
        cls, ext_id = str(obj.get("class", "")), str(obj.get("id", ""))
        canonical = next((c for c in CLASSES if c.lower() == cls.lower()), None)
        if canonical is None:
            continue  # classes this toolstack does not know are left out
        objects.append(ExportedObject(canonical, ext_id, _typed(canonical, obj["snapshot"])))
    return Header(version if isinstance(version, dict) else {}, objects)
