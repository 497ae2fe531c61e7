"""Messages (alerts): create, read by time/object, filter, destroy — over XML-RPC."""

from __future__ import annotations

import xmlrpc.client
from datetime import UTC, datetime, timedelta
from typing import Any

from sim_helpers import pool_master

from xenstack.testing import failure


def test_message_lifecycle(session: Any) -> None:
    host = pool_master(session)
    host_uuid = session.xenapi.host.get_uuid(host)
    start = xmlrpc.client.DateTime((datetime.now(UTC) - timedelta(seconds=2)).timetuple())
    ref = session.xenapi.message.create("HA_POOL_OVERCOMMITTED", "3", "Host", host_uuid, "body")
    record = session.xenapi.message.get_record(ref)
    assert record["name"] == "HA_POOL_OVERCOMMITTED" and record["priority"] == "3"
    assert record["cls"] == "Host" and record["obj_uuid"] == host_uuid
    assert record["timestamp"]
    assert session.xenapi.message.get_by_uuid(record["uuid"]) == ref
    assert ref in session.xenapi.message.get_since(start)
    future = xmlrpc.client.DateTime((datetime.now(UTC) + timedelta(hours=1)).timetuple())
    assert session.xenapi.message.get_since(future) == {}
    assert ref in session.xenapi.message.get("Host", host_uuid, start)
    assert ref in session.xenapi.message.get_all()
    assert ref in session.xenapi.message.get_all_records()
    where = session.xenapi.message.get_all_records_where('field "name" = "HA_POOL_OVERCOMMITTED"')
    assert list(where) == [ref]
    session.xenapi.message.destroy(ref)
    assert session.xenapi.message.get_all() == []
    assert failure(session.xenapi.message.get_record, ref)[0] == "HANDLE_INVALID"


def test_message_errors(session: Any) -> None:
    err = failure(session.xenapi.message.create, "X", "1", "VM", "no-such-uuid", "")
    assert err == ["UUID_INVALID", "VM", "no-such-uuid"]
    err = failure(session.xenapi.message.create, "X", "1", "Nonsense", "x", "")
    assert err[0] == "FIELD_TYPE_ERROR"
    assert failure(session.xenapi.message.get_by_uuid, "nope") == [
        "UUID_INVALID",
        "message",
        "nope",
    ]
    pool_uuid = session.xenapi.pool.get_uuid(session.xenapi.pool.get_all()[0])
    refs = [session.xenapi.message.create(f"M{i}", "5", "Pool", pool_uuid, "") for i in range(3)]
    session.xenapi.message.destroy_many(refs[:2])
    assert session.xenapi.message.get_all() == [refs[2]]
