"""An OVSDB client on Open vSwitch's own Python IDL (``ovs.db.idl``), used from threads.

The IDL keeps a replica of the database. :meth:`Ovsdb.transact` runs a function that edits
rows in one transaction, retries it when the database moved under it, and, as ``ovs-vsctl``
does, waits for ``ovs-vswitchd`` to have applied it (``next_cfg``/``cur_cfg``), so that an
interface has its ``ofport`` when it returns. One lock serialises the callers; the driver
calls in from worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import ovs.db.idl  # type: ignore[import-untyped]
import ovs.jsonrpc  # type: ignore[import-untyped]
import ovs.poller  # type: ignore[import-untyped]
import ovs.stream  # type: ignore[import-untyped]
import ovs.util  # type: ignore[import-untyped]

from ..model import SwitchError
from . import fastidl, fastjson

fastjson.install()
fastidl.install()

T = TypeVar("T")
Row = Any  # ovs.db.idl.Row: columns are attributes


# what the driver reads and writes: the replica keeps these alone (a host with a thousand
# ports syncs in a fraction of the time the whole database takes)
COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "external_ids", "other_config", "datapath_type", "fail_mode"],
    "Port": [
        "name",
        "interfaces",
        "tag",
        "fake_bridge",
        "external_ids",
        "bond_mode",
        "lacp",
        "other_config",
    ],
    "Interface": [
        "name",
        "type",
        "options",
        "external_ids",
        "ofport",
        "ofport_request",
        "mtu",
        "mtu_request",
        "link_state",
        "ingress_policing_rate",
        "ingress_policing_burst",
    ],
}
# read when asked (select), not kept: vswitchd rewrites every interface's counters every
# few seconds, and a replica holding them took most of a thousand-port host's sync
ON_DEMAND = {"Interface": ["name", "statistics"]}


class Ovsdb:
    def __init__(self, remote: str, schema: str, timeout: float = 60.0) -> None:
        self.remote = remote
        helper = ovs.db.idl.SchemaHelper(location=schema)
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        self.idl = ovs.db.idl.Idl(remote, helper)
        self.timeout = timeout
        self.lock = threading.RLock()

    def _block(self, deadline: float) -> None:
        poller = ovs.poller.Poller()
        self.idl.wait(poller)
        poller.timer_wait(max(1, int(min(deadline - time.monotonic(), 0.5) * 1000)))
        poller.block()

    def connect(self) -> None:
        """Wait for the first complete replica of the database."""
        deadline = time.monotonic() + self.timeout
        with self.lock:
            seqno = self.idl.change_seqno
            while True:
                self.idl.run()
                if self.idl.has_ever_connected() and self.idl.change_seqno != seqno:
                    return
                if time.monotonic() > deadline:
                    raise SwitchError("OVSDB did not answer within the timeout")
                self._block(deadline)

    def select(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        """Every row of ``table`` with ``columns``, as OVSDB's JSON gives them, read once on a
        connection of its own (not through the replica)."""
        error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(self.remote))
        if error:
            raise SwitchError(f"OVSDB at {self.remote}: {ovs.util.strerror(error)}")
        conn = ovs.jsonrpc.Connection(stream)
        try:
            op = {"op": "select", "table": table, "where": [], "columns": columns}
            request = ovs.jsonrpc.Message.create_request("transact", ["Open_vSwitch", op])
            error, reply = conn.transact_block(request)
            if error or reply.error is not None:
                raise SwitchError(f"OVSDB select on {table}: {error or reply.error}")
            return list(reply.result[0].get("rows", []))
        finally:
            conn.close()

    def close(self) -> None:
        with self.lock:
            self.idl.close()

    def refresh(self) -> None:
        with self.lock:
            self.idl.run()

    def rows(self, table: str) -> Iterator[Row]:
        return iter(list(self.idl.tables[table].rows.values()))

    def find(self, table: str, name: str) -> Row | None:
        for row in self.idl.tables[table].rows.values():
            if row.name == name:
                return row
        return None

    def root(self) -> Row:
        return next(iter(self.idl.tables["Open_vSwitch"].rows.values()))

    def transact(self, edit: Callable[[ovs.db.idl.Transaction], T], wait: bool = True) -> T:
        """Run ``edit(txn)`` in a transaction until it commits; wait for vswitchd if asked."""
        deadline = time.monotonic() + self.timeout
        with self.lock:
            while True:
                self.idl.run()
                txn = ovs.db.idl.Transaction(self.idl)
                result = edit(txn)
                if wait:
                    self.root().increment("next_cfg")
                status = txn.commit_block()
                if status == ovs.db.idl.Transaction.TRY_AGAIN:
                    if time.monotonic() > deadline:
                        raise SwitchError("OVSDB transaction kept conflicting")
                    continue
                if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
                    raise SwitchError(f"OVSDB transaction failed: {txn.get_error()}")
                if wait and status == ovs.db.idl.Transaction.SUCCESS:
                    self._wait_cfg(txn.get_increment_new_value(), deadline)
                return result

    def _wait_cfg(self, wanted: int, deadline: float) -> None:
        while True:
            self.idl.run()
            if self.root().cur_cfg >= wanted:
                return
            if time.monotonic() > deadline:
                raise SwitchError("ovs-vswitchd did not apply the change within the timeout")
            self._block(deadline)
