"""``get_data_sources``, ``query_data_source``, ``record_data_source`` and
``forget_data_source_archives`` on host, VM and SR: the toolstack's RRDs (``xenstack.rrd``).

``get_data_sources`` lists every source the object reports, ``enabled`` when it is archived,
with its newest 5-second average as ``value``; ``query_data_source`` is that value for one
source; ``record_data_source`` archives a source that is not by default; ``forget_data_source
_archives`` drops what a source's archives hold. On a VM these need a running or paused VM
(XAPI's ``data_source_op``). A name the object has no source of is XAPI's INTERNAL_ERROR.
"""

from __future__ import annotations

from typing import Any, cast

from ...core.context import Context
from ...errors import ApiError
from ...rrd.store import RrdStore, UnknownSource
from ..registry import implements
from ..vm.lifecycle import assert_operation_valid

OWNERS = {"host": "host", "VM": "vm", "SR": "sr"}


def store(ctx: Context) -> RrdStore:
    """The toolstack's archives (made by the composition root)."""
    return cast(RrdStore, ctx.toolstack.rrd)


def _owner(ctx: Context, cls: str, ref: str) -> tuple[str, str]:
    return OWNERS[cls], str(ctx.db.get(cls, ref)["uuid"])


def _unknown(name: str) -> ApiError:
    return ApiError("INTERNAL_ERROR", [f'Rrd.Invalid_data_source("{name}")'])


def _vm_live(ctx: Context, cls: str, ref: str) -> None:
    if cls == "VM":
        assert_operation_valid(ctx.db, ref, "data_source_op")


def _get(cls: str) -> Any:
    def get_data_sources(ctx: Context, ref: str) -> list[dict[str, Any]]:
        owner, uuid = _owner(ctx, cls, ref)
        return [
            {
                "name_label": info.definition.name,
                "name_description": info.definition.description,
                "enabled": info.enabled,
                "standard": info.definition.standard,
                "units": info.definition.units,
                "min": info.definition.min,
                "max": info.definition.max,
                "value": info.value,
            }
            for info in store(ctx).sources(owner, uuid)
        ]

    return get_data_sources


def _query(cls: str) -> Any:
    def query_data_source(ctx: Context, ref: str, data_source: str) -> float:
        _vm_live(ctx, cls, ref)
        owner, uuid = _owner(ctx, cls, ref)
        try:
            value = store(ctx).query(owner, uuid, data_source)
        except UnknownSource:
            raise _unknown(data_source) from None
        return 0.0 if value != value else value

    return query_data_source


def _record(cls: str) -> Any:
    def record_data_source(ctx: Context, ref: str, data_source: str) -> None:
        _vm_live(ctx, cls, ref)
        owner, uuid = _owner(ctx, cls, ref)
        try:
            store(ctx).record(owner, uuid, data_source)
        except UnknownSource:
            raise _unknown(data_source) from None

    return record_data_source


def _forget(cls: str) -> Any:
    def forget_data_source_archives(ctx: Context, ref: str, data_source: str) -> None:
        _vm_live(ctx, cls, ref)
        owner, uuid = _owner(ctx, cls, ref)
        try:
            store(ctx).forget(owner, uuid, data_source)
        except UnknownSource:
            raise _unknown(data_source) from None

    return forget_data_source_archives


for _cls in OWNERS:
    implements(f"{_cls}.get_data_sources")(_get(_cls))
    implements(f"{_cls}.query_data_source")(_query(_cls))
    implements(f"{_cls}.record_data_source")(_record(_cls))
    implements(f"{_cls}.forget_data_source_archives")(_forget(_cls))
