"""xenstack's OpenStack dom0 plug-ins through host.call_plugin, called as os-xenapi 0.3.x's
client calls them (pickled ``params`` for the registered calls, plain JSON dicts for the
others), with their effects checked on the host's XenStore (pyxs), files and tools."""

from __future__ import annotations

import base64
import json
import pickle
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from pluginkit import call_serialized
from pyxs._internal import Op

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool
from xenstack.xenops.simulator import SimulatorBackend


class NoNovaAgent(SimulatorBackend):
    """Guests without nova's agent: here a test's own agent, over pyxs, answers."""

    async def guest_write(self, vm_id: str, key: str, value: str) -> None:
        if not key.startswith("data/host/"):
            await super().guest_write(vm_id, key, value)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xs-os") / "state"
    with simulated_pool(state, guest_agent_delay=0, backend=NoNovaAgent()) as running:
        yield running


@pytest.fixture
def x(pool: RunningPool) -> Iterator[Any]:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xs-tests")
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture
def running_vm(x: Any) -> Iterator[tuple[str, int]]:
    vm = halted_vm(x, "xs-os-vm")
    x.VM.start(vm, False, True)
    yield vm, int(x.VM.get_domid(vm))
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)


def host(x: Any) -> str:
    return str(x.host.get_all()[0])


def serialized(x: Any, plugin: str, fn: str, *args: Any, **kwargs: Any) -> Any:
    """os-xenapi's ``call_plugin_serialized`` on the pool's host."""
    return call_serialized(x, host(x), plugin, fn, *args, **kwargs)


def xs(pool: RunningPool, domid: int | None = None) -> Any:
    import pyxs

    assert pool.state_dir is not None
    client = pyxs.Client(unix_socket_path=str(pool.state_dir / "run" / "xenstored" / "socket"))
    client.connect()
    if domid is not None:
        client.ack(Op.RESTRICT, str(domid).encode() + b"\0")
    return client


def test_dom0_plugin_version(x: Any) -> None:
    assert serialized(x, "dom0_plugin_version.py", "get_version") == "2.1"


def test_pickles_carry_plain_data_only(x: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, (f"touch {marker}",))

    params = pickle.dumps({"args": (Evil(),), "kwargs": {}}, protocol=0).decode("latin-1")
    err = failure(
        x.host.call_plugin, host(x), "dom0_plugin_version.py", "get_version", {"params": params}
    )
    assert err[:3] == ["XENAPI_PLUGIN_FAILURE", "get_version", "UnpicklingError"]
    assert not marker.exists()


def test_xenstore_records(x: Any, pool: RunningPool, running_vm: tuple[str, int]) -> None:
    _, domid = running_vm
    call = x.host.call_plugin
    args = {"dom_id": str(domid), "path": "vm-data/user-metadata/role"}
    value = json.dumps("web")
    assert (
        json.loads(call(host(x), "xenstore.py", "write_record", {**args, "value": value})) == value
    )
    dom0 = xs(pool)
    assert dom0.read(f"/local/domain/{domid}/vm-data/user-metadata/role".encode()) == b'"web"'
    assert json.loads(call(host(x), "xenstore.py", "read_record", args)) == '"web"'
    listed = call(host(x), "xenstore.py", "list_records",
                  {"dom_id": str(domid), "path": "vm-data/user-metadata"})  # fmt: skip
    assert json.loads(listed) == {"role": "web"}
    assert json.loads(call(host(x), "xenstore.py", "delete_record", args)) == ""
    assert not dom0.exists(f"/local/domain/{domid}/vm-data/user-metadata/role".encode())
    missing = {**args, "ignore_missing_path": "True"}
    assert json.loads(call(host(x), "xenstore.py", "read_record", missing)) == "None"
    err = failure(call, host(x), "xenstore.py", "read_record", args)
    assert err[:3] == ["XENAPI_PLUGIN_FAILURE", "read_record", "XenstoreError"]
    dom0.close()


class FakeAgent:
    """A guest agent answering nova's requests from inside the domain (pyxs as ``domid``)."""

    def __init__(self, pool: RunningPool, domid: int) -> None:
        self.client = xs(pool, domid)
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.monitor = self.client.monitor()
        self.monitor.watch(b"data/host", b"agent")
        self.thread.start()

    def serve(self) -> None:
        try:
            for path, _ in self.monitor.wait():
                name = path.decode().rsplit("/", 1)[-1]
                if not path.startswith(b"data/host/") or not self.client.exists(path):
                    continue
                request = json.loads(self.client.read(path))
                self.client.delete(path)
                self.requests.append(request)
                answer = {"returncode": "0", "message": f"did {request['name']}"}
                if request["name"] == "version":
                    answer["message"] = "1.0.9"
                self.client.write(f"data/guest/{name}".encode(), json.dumps(answer).encode())
        except Exception:  # the connection closed at the end of the test
            return

    def close(self) -> None:
        self.client.close()


def test_agent_protocol_over_xenstore(
    x: Any, pool: RunningPool, running_vm: tuple[str, int]
) -> None:
    _, domid = running_vm
    agent = FakeAgent(pool, domid)
    try:
        base = {"dom_id": str(domid), "timeout": "60"}
        call = x.host.call_plugin
        answer = json.loads(call(host(x), "agent.py", "version", {**base, "id": "r1"}))
        assert answer == {"returncode": "0", "message": "1.0.9"}
        call(host(x), "agent.py", "key_init", {**base, "id": "r2", "pub": "12345"})
        call(host(x), "agent.py", "password", {**base, "id": "r3", "enc_pass": "c2VjcmV0"})
        call(host(x), "agent.py", "resetnetwork", {**base, "id": "r4"})
        b64 = base64.b64encode
        inject = {"b64_path": b64(b"/etc/motd").decode(), "b64_contents": b64(b"hi").decode()}
        call(host(x), "agent.py", "inject_file", {**base, "id": "r5", **inject})
        assert agent.requests == [
            {"name": "version", "value": "agent"},
            {"name": "keyinit", "value": "12345"},
            {"name": "password", "value": "c2VjcmV0"},
            {"name": "resetnetwork", "value": ""},
            {"name": "file_inject", "value": {"b64_path": inject["b64_path"],
                                              "b64_file": inject["b64_contents"]}},
        ]  # fmt: skip
        dom0 = xs(pool)
        assert dom0.list(f"/local/domain/{domid}/data/guest".encode()) == []  # answers taken
        dom0.close()
    finally:
        agent.close()
    err = failure(x.host.call_plugin, host(x), "agent.py", "version",
                  {"dom_id": str(domid), "timeout": "0.5", "id": "r6"})  # fmt: skip
    assert err[0] == "XENAPI_PLUGIN_FAILURE" and err[-1].startswith("TIMEOUT:")


def test_netwrap_runs_only_allowed_commands(x: Any, tmp_path: Path) -> None:
    out = x.host.call_plugin(
        host(x), "netwrap.py", "run_command", {"cmd": json.dumps(["ip", "-V"])}
    )
    assert out.startswith("ip utility")
    marker = tmp_path / "no"
    err = failure(x.host.call_plugin, host(x), "netwrap.py", "run_command",
                  {"cmd": json.dumps(["touch", str(marker)])})  # fmt: skip
    assert "not permitted" in err[-1] and not marker.exists()


def test_bandwidth_answers_the_vif_counters(x: Any) -> None:
    counters = serialized(x, "bandwidth.py", "fetch_all_bandwidth")
    assert isinstance(counters, dict)  # no vif<domid>.<devid> on a simulated host
    assert all(k.isdigit() for k in counters)


def test_console_log(x: Any, pool: RunningPool, running_vm: tuple[str, int]) -> None:
    _, domid = running_vm
    assert pool.state_dir is not None
    logs = pool.state_dir / "console"
    logs.mkdir(exist_ok=True)
    text = b"".join(b"boot line %d\n" % i for i in range(20000))
    (logs / f"console.{domid}").write_bytes(text)
    answer = x.host.call_plugin(host(x), "console.py", "get_console_log", {"dom_id": str(domid)})
    assert zlib.decompress(base64.b64decode(answer)) == text[-102400:]
    err = failure(x.host.call_plugin, host(x), "console.py", "get_console_log", {"dom_id": "999"})
    assert "No console log" in err[-1]


def test_xenhost_host_data_and_uptime(x: Any) -> None:
    data = json.loads(x.host.call_plugin(host(x), "xenhost.py", "host_data", {}))
    assert data["host_uuid"] == x.host.get_uuid(host(x))
    assert data["host_name-label"] == x.host.get_name_label(host(x))
    metrics = x.host.get_metrics(host(x))
    assert data["host_memory"]["total"] == int(x.host_metrics.get_memory_total(metrics))
    assert data["host_ip_address"] == x.host.get_address(host(x))
    uptime = json.loads(x.host.call_plugin(host(x), "xenhost.py", "host_uptime", {}))
    assert "load average" in uptime["uptime"]
    err = failure(serialized, x, "xenhost.py", "network_config", {"cmd": "rm_rf", "args": {}})
    assert "not permitted" in err[-1]


def test_migration_moves_a_received_chain_into_the_sr(x: Any, pool: RunningPool) -> None:
    from xenstack.storage.vhd import VhdImage, create_dynamic

    assert pool.state_dir is not None
    instance = "0b9c5e1e-1111-4a4a-9c9c-000000000001"
    images = pool.state_dir / "images" / f"instance{instance}"
    images.mkdir(parents=True)
    create_dynamic(str(images / "1.vhd"), 4 << 20)
    create_dynamic(str(images / "0.vhd"), parent=str(images / "1.vhd"))
    with VhdImage.open(str(images / "0.vhd")) as img:
        img.write(0, b"migrated" * 512)
    srs = [r for r in x.SR.get_all_records().values() if r["sm_config"].get("xenstack_path")]
    sr_path = Path(srs[0]["sm_config"]["xenstack_path"])
    stack = ["11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"]
    imported = serialized(x, "migration.py", "move_vhds_into_sr", instance_uuid=instance,
                               sr_path=str(sr_path), uuid_stack=stack)  # fmt: skip
    assert imported == {"root": {"uuid": stack[-1]}}
    with VhdImage.open(str(sr_path / f"{stack[-1]}.vhd"), writable=False) as img:
        assert img.depth == 2 and bytes(img.read(0, 4096)) == b"migrated" * 512
    assert not images.exists()


def test_xenhost_set_host_enabled_and_config(x: Any) -> None:
    call = x.host.call_plugin
    h = host(x)
    assert json.loads(call(h, "xenhost.py", "set_host_enabled", {"enabled": "false"})) == {
        "status": "disabled"
    }
    assert x.host.get_enabled(h) is False
    assert json.loads(call(h, "xenhost.py", "set_host_enabled", {"enabled": "true"})) == {
        "status": "enabled"
    }
    assert x.host.get_enabled(h) is True
    call(h, "xenhost.py", "set_config", {"key": "k", "value": json.dumps({"a": [1]})})
    assert json.loads(call(h, "xenhost.py", "get_config", {"key": "k"})) == {"a": [1]}
    call(h, "xenhost.py", "set_config", {"key": "k", "value": "null"})
    assert json.loads(call(h, "xenhost.py", "get_config", {"key": "k"})) is None
