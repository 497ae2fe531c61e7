"""The IDL's column defaults made once (net/ovs/fastidl.py): what a row lacks reads as the
column type's default, and a copy is handed out, so changing it changes no other row."""

from __future__ import annotations

import ovs.db.data
import ovs.db.idl
import ovs.db.schema
import ovs.json

from xenstack.net.ovs import ovsdb  # noqa: F401 (installs fastidl)
from xenstack.net.ovs.daemons import SCHEMA


def test_defaults_equal_the_types_and_are_not_shared() -> None:
    assert ovs.db.idl.ColumnDefaultDict.__missing__.__module__ == "xenstack.net.ovs.fastidl"
    schema = ovs.db.schema.DbSchema.from_json(ovs.json.from_file(str(SCHEMA)))
    table = schema.tables["Interface"]
    first, second = ovs.db.idl.ColumnDefaultDict(table), ovs.db.idl.ColumnDefaultDict(table)
    for name, column in table.columns.items():
        assert first[name] == ovs.db.data.Datum.default(column.type), name
    ids = first["external_ids"]
    ids.values[ovs.db.data.Atom.new("k")] = ovs.db.data.Atom.new("v")
    assert second["external_ids"] == ovs.db.data.Datum.default(table.columns["external_ids"].type)
    assert first["external_ids"] is not second["external_ids"]
