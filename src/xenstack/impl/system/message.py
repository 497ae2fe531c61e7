"""Messages (alerts): created by clients and by the toolstack, read by time, class and object.

XAPI keeps messages outside its database; here they are rows of the ``message`` class, so they
persist and ``event.from`` sees them like any other object.
"""

from __future__ import annotations

import re
from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid, now
from ...core.objects import new_record
from ...db.store import Database
from ...db.where import compile_where
from ...errors import ApiError
from ...idl.types import DateTime
from ..registry import implements

#: message class (enum ``cls``) -> XenAPI class whose uuid ``obj_uuid`` names
CLS_TABLE = {
    "VM": "VM",
    "Host": "host",
    "SR": "SR",
    "Pool": "pool",
    "VMPP": "VMPP",
    "VMSS": "VMSS",
    "PVS_proxy": "PVS_proxy",
    "VDI": "VDI",
    "Certificate": "Certificate",
}


def time_key(value: str) -> str:
    """A sortable ``YYYYMMDDHHMMSS`` from any of the datetime forms clients send."""
    digits = re.sub(r"\D", "", value.split("+")[0])
    return (digits + "0" * 14)[:14]


def _object_exists(db: Database, cls: str, obj_uuid: str) -> bool:
    table = CLS_TABLE.get(cls)
    return table is not None and obj_uuid in db.table(table).by_uuid


def post(
    db: Database,
    name: str,
    priority: int,
    cls: str,
    obj_uuid: str,
    body: str,
    when: DateTime | None = None,
) -> str:
    """Create a message row stamped ``when`` (default: the system clock's now); the
    toolstack's own alerts use this too."""
    ref = new_ref()
    with db.transaction():
        db.create(
            "message",
            ref,
            new_record(
                "message",
                uuid=new_uuid(),
                name=name,
                priority=priority,
                cls=cls,
                obj_uuid=obj_uuid,
                timestamp=when or now(),
                body=body,
            ),
        )
    return ref


@implements("message.create")
def create(ctx: Context, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    if not _object_exists(ctx.db, cls, obj_uuid):
        raise ApiError("UUID_INVALID", [cls, obj_uuid])
    return post(ctx.db, name, priority, cls, obj_uuid, body, ctx.toolstack.clock.now())


def _since(db: Database, since: str) -> dict[str, dict[str, Any]]:
    """Messages stamped at or after ``since`` (XAPI's clock has sub-second precision)."""
    key = time_key(since)
    return {
        ref: row
        for ref, row in db.table("message").rows.items()
        if time_key(row["timestamp"]) >= key
    }


@implements("message.get_since")
def get_since(ctx: Context, since: DateTime) -> dict[str, dict[str, Any]]:
    return _since(ctx.db, since)


@implements("message.get")
def get(ctx: Context, cls: str, obj_uuid: str, since: DateTime) -> dict[str, dict[str, Any]]:
    if not _object_exists(ctx.db, cls, obj_uuid):
        # xapi: ocaml/xapi/xapi_message.ml passes 0
        raise ApiError("UUID_INVALID", [])
    return {
        ref: row
        for ref, row in _since(ctx.db, since).items()
        if row["cls"] == cls and row["obj_uuid"] == obj_uuid
    }


@implements("message.get_all_records")
def get_all_records(ctx: Context) -> dict[str, dict[str, Any]]:
    return dict(ctx.db.table("message").rows)


@implements("message.get_all_records_where")
def get_all_records_where(ctx: Context, expr: str) -> dict[str, dict[str, Any]]:
    test = compile_where(expr)
    return {ref: row for ref, row in ctx.db.table("message").rows.items() if test(row)}


@implements("message.get_all")
def get_all(ctx: Context) -> list[str]:
    return ctx.db.refs("message")


@implements("message.get_record")
def get_record(ctx: Context, self_: str) -> dict[str, Any]:
    return ctx.db.get("message", self_)


@implements("message.get_by_uuid")
def get_by_uuid(ctx: Context, uuid: str) -> str:
    ref = ctx.db.table("message").by_uuid.get(uuid)
    if ref is None:
        raise ApiError("UUID_INVALID", ["message", uuid])
    return ref


@implements("message.destroy")
def destroy(ctx: Context, self_: str) -> None:
    with ctx.db.transaction() as db:
        db.destroy("message", self_)


@implements("message.destroy_many")
def destroy_many(ctx: Context, messages: list[str]) -> None:
    for ref in messages:
        ctx.db.get("message", ref)
    with ctx.db.transaction() as db:
        for ref in messages:
            db.destroy("message", ref)
