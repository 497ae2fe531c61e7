"""Helpers shared by the core's wire tests (no tests here): raw calls and object factories."""

from __future__ import annotations

import http.client
from typing import Any

import orjson

from xenstack.idl.model import CLASSES

GIB = str(1 << 30)


class JsonRpc:
    """A keep-alive JSON-RPC client on ``/jsonrpc`` that checks the response content type."""

    def __init__(self, port: int, version: str = "2.0") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.version = version
        self.next_id = 0

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        self.conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, orjson.loads(data)

    def request(self, method: str, *params: Any) -> dict[str, Any]:
        self.next_id += 1
        doc: dict[str, Any] = {"method": method, "params": list(params), "id": self.next_id}
        if self.version == "2.0":
            doc["jsonrpc"] = "2.0"
        status, answer = self.post(orjson.dumps(doc))
        assert status == 200
        assert answer["id"] == self.next_id
        return answer

    def close(self) -> None:
        self.conn.close()


def wire_record(cls: str, **overrides: Any) -> dict[str, Any]:
    """A full constructor record for ``cls`` as a client sends it (ints as strings)."""
    cdef = CLASSES[cls]
    record: dict[str, Any] = {}
    for name, value in cdef.defaults().items():
        if cdef.fields[name].in_constructor:
            record[name] = str(value) if type(value) is int else value
    record.update(overrides)
    return record


def network_record(label: str) -> dict[str, Any]:
    return wire_record("network", name_label=label, MTU="1500", bridge="")  # "": server picks


def new_network(session: Any, label: str) -> str:
    return str(session.xenapi.network.create(network_record(label)))


def vif_record(vm: str, network: str, device: str = "0") -> dict[str, Any]:
    return wire_record(
        "VIF", VM=vm, network=network, device=device, MTU="1500", locking_mode="network_default"
    )


def new_vif(session: Any, vm: str, network: str, device: str = "0") -> str:
    return str(session.xenapi.VIF.create(vif_record(vm, network, device)))
