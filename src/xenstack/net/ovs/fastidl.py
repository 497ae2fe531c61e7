"""Column defaults made once, for Open vSwitch's Python IDL.

The IDL fills a row's missing columns on demand (``ColumnDefaultDict.__missing__``) by
building the column type's default ``Datum`` anew, which costs tens of microseconds a time
in pure Python; the first sync of a host with a thousand ports asked for some 16,000 of
them and spent ~0.4 s there. :func:`install` makes each type's default once and hands out a
copy (a ``Datum`` is mutable: callers may change what they got).
"""

from __future__ import annotations

from typing import Any

import ovs.db.data  # type: ignore[import-untyped]
import ovs.db.idl  # type: ignore[import-untyped]

_DEFAULTS: dict[int, tuple[Any, Any]] = {}


def _missing(self: Any, column: str) -> Any:
    kind = self._table.columns[column].type
    cached = _DEFAULTS.get(id(kind))
    if cached is None or cached[0] is not kind:  # keyed by identity; the type kept alive
        cached = _DEFAULTS[id(kind)] = (kind, ovs.db.data.Datum.default(kind))
    return cached[1].copy()


def install() -> None:
    ovs.db.idl.ColumnDefaultDict.__missing__ = _missing
