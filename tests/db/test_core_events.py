"""Events over the wire: event.from loops, subscriptions, blocking, inject, the legacy API."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
import XenAPI
from test_core_support import new_network

from xenstack.db import store
from xenstack.testing import RunningPool

TOKEN = re.compile(r"^\d{20},\d{20}$")


def event_from(session: Any, classes: list[str], token: str, timeout: float = 0.0) -> Any:
    return getattr(session.xenapi.event, "from")(classes, token, timeout)


def ops(batch: Any) -> list[tuple[str, str, str]]:
    return [(e["class"], e["operation"], e["ref"]) for e in batch["events"]]


def test_empty_token_returns_everything_as_add(session: Any) -> None:
    x = session.xenapi
    batch = event_from(session, ["vm", "host", "pool"], "")
    assert TOKEN.match(batch["token"])
    got = {(c, r) for c, op, r in ops(batch) if op == "add"}
    expected = {("vm", r) for r in x.VM.get_all()} | {("host", r) for r in x.host.get_all()}
    expected |= {("pool", r) for r in x.pool.get_all()}
    assert got == expected
    assert {op for _, op, _ in ops(batch)} == {"add"}
    for event in batch["events"]:
        cls = {"vm": "VM"}.get(event["class"], event["class"])
        assert event["snapshot"] == getattr(x, cls).get_record(event["ref"])
    counts = batch["valid_ref_counts"]
    assert int(counts["vm"]) == len(x.VM.get_all())
    assert int(counts["network"]) == len(x.network.get_all())


def test_add_mod_del_and_coalescing(session: Any) -> None:
    x = session.xenapi
    token = event_from(session, ["network"], "")["token"]
    net = new_network(session, "ev-net")
    batch = event_from(session, ["network"], token)
    assert ops(batch) == [("network", "add", net)]
    assert batch["events"][0]["snapshot"]["name_label"] == "ev-net"
    token = batch["token"]
    for label in ("one", "two", "three"):
        x.network.set_name_label(net, label)
    batch = event_from(session, ["network"], token)
    assert ops(batch) == [("network", "mod", net)]  # three changes, one event
    assert batch["events"][0]["snapshot"]["name_label"] == "three"
    assert batch["token"] > token
    token = batch["token"]
    x.network.destroy(net)
    batch = event_from(session, ["network"], token)
    assert ops(batch) == [("network", "del", net)]
    # an object created and destroyed between two calls is never seen
    token = batch["token"]
    x.network.destroy(new_network(session, "ephemeral"))
    assert ops(event_from(session, ["network"], token)) == []


def test_class_and_object_subscriptions(session: Any) -> None:
    x = session.xenapi
    a, b = new_network(session, "a"), new_network(session, "b")
    token = event_from(session, ["network"], "")["token"]
    x.network.set_name_description(a, "changed")
    x.network.set_name_description(b, "changed")
    vm = x.VM.get_all()[0]
    x.VM.add_to_other_config(vm, "ev", "1")
    assert ops(event_from(session, [f"network/{a}"], token)) == [("network", "mod", a)]
    assert {r for _, _, r in ops(event_from(session, ["network"], token))} == {a, b}
    assert ops(event_from(session, ["vm"], token)) == [("vm", "mod", vm)]
    assert len(ops(event_from(session, ["*"], token))) == 3
    assert ops(event_from(session, ["no_such_class"], token)) == []


def test_event_from_blocks_until_a_change(session: Any, xenstack_pool: RunningPool) -> None:
    x = session.xenapi
    net = new_network(session, "blocker")
    token = event_from(session, ["network"], "")["token"]
    start = time.monotonic()
    batch = event_from(session, ["network"], token, 0.5)
    waited = time.monotonic() - start
    assert batch["events"] == [] and 0.45 <= waited < 2.0
    assert TOKEN.match(batch["token"])

    def change_later() -> None:
        time.sleep(0.3)
        other = XenAPI.Session(xenstack_pool.url)
        other.xenapi.login_with_password("root", xenstack_pool.password, "1.0", "t")
        other.xenapi.VM.add_to_other_config(other.xenapi.VM.get_all()[0], "noise", "1")
        time.sleep(0.2)
        other.xenapi.network.set_name_label(net, "woken")
        other.xenapi.session.logout()

    worker = threading.Thread(target=change_later)
    start = time.monotonic()
    worker.start()
    batch = event_from(session, ["network"], token, 10.0)
    waited = time.monotonic() - start
    worker.join()
    assert ops(batch) == [("network", "mod", net)]
    assert 0.45 <= waited < 3.0  # a VM change does not wake a network watcher
    x.network.destroy(net)


def test_inject(session: Any) -> None:
    x = session.xenapi
    pool = x.pool.get_all()[0]
    token = event_from(session, ["pool"], "")["token"]
    injected = x.event.inject("pool", pool)
    assert TOKEN.match(injected) and injected > token
    batch = event_from(session, ["pool"], token)
    assert ops(batch) == [("pool", "mod", pool)]
    assert batch["token"] == injected
    with pytest.raises(XenAPI.Failure) as err:
        x.event.inject("pool", "OpaqueRef:nope")
    assert err.value.details[0] == "HANDLE_INVALID"


def test_legacy_register_next_unregister(session: Any) -> None:
    x = session.xenapi
    x.event.register(["network"])
    net = new_network(session, "legacy")
    events = x.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("network", "add", net)]
    x.network.set_name_label(net, "legacy2")
    x.VM.add_to_other_config(x.VM.get_all()[0], "legacy", "1")  # not registered: not seen
    events = x.event.next()
    assert [(e["operation"], e["snapshot"]["name_label"]) for e in events] == [("mod", "legacy2")]
    x.event.unregister(["network"])
    with pytest.raises(XenAPI.Failure) as err:
        x.event.next()
    assert err.value.details[0] == "SESSION_NOT_REGISTERED"


def test_events_lost(session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "DELETED_KEPT", 3)
    x = session.xenapi
    x.event.register(["network"])
    for i in range(6):
        x.network.destroy(new_network(session, f"lost-{i}"))
    with pytest.raises(XenAPI.Failure) as err:
        x.event.next()
    assert err.value.details == ["EVENTS_LOST"]
    net = new_network(session, "after")  # the client re-reads state and carries on
    assert [e["ref"] for e in x.event.next()] == [net]
    x.event.unregister(["network"])


def test_tasks_are_visible_through_events(session: Any) -> None:
    x = session.xenapi
    token = event_from(session, ["task"], "")["token"]
    task = x.Async.task.create("made-by-async", "")
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = event_from(session, ["task"], token, 2.0)
        token = batch["token"]
        for event in batch["events"]:
            if event["ref"] == task and event["operation"] != "del":
                seen.append(event["snapshot"]["status"])
        if seen and seen[-1] != "pending":
            break
    assert seen[-1] == "success"
    assert x.task.get_status(task) == "success"
    x.task.destroy(task)
    batch = event_from(session, ["task"], token)
    assert ops(batch) == [("task", "del", task)]
