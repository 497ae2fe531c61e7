"""The composition root: what Toolstack is given (configuration, backend, clock) is what the
layers below use; nothing below the command line reads the environment."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from xenstack.core.config import ToolstackConfig, from_environment
from xenstack.core.context import Context
from xenstack.impl.host.hypervisor import hypervisor
from xenstack.testing import FakeClock, halted_vm, login, simulated_pool
from xenstack.toolstack import Toolstack
from xenstack.xenops.simulator import SimulatorBackend


def test_a_tasks_created_and_finished_times_follow_the_fake_clock() -> None:
    clock = FakeClock()
    toolstack = Toolstack(None, clock=clock)
    toolstack.initialise("pw")

    async def run() -> dict[str, Any]:
        release = asyncio.Event()

        async def work(ctx: Context) -> None:
            await release.wait()

        ctx = Context(toolstack, session="", method="test.work")
        task = toolstack.tasks.spawn(ctx, work, [])
        clock.advance(90)
        release.set()
        await toolstack.tasks.running[task]
        return toolstack.db.get("task", task)

    row = asyncio.run(run())
    assert (row["status"], str(row["created"])) == ("success", "20300101T00:00:00Z")
    assert str(row["finished"]) == "20300101T00:01:30Z"


def test_messages_and_sessions_are_stamped_by_the_toolstacks_clock() -> None:
    clock = FakeClock()
    clock.advance(3600)
    with simulated_pool(clock=clock) as pool:
        session = login(pool)
        x = session.xenapi
        (host,) = x.host.get_all()
        message = x.message.create("HELLO", 1, "Host", x.host.get_uuid(host), "body")
        assert str(x.message.get_record(message)["timestamp"]) == "20300101T01:00:00Z"
        assert str(x.session.get_last_active(session._session)) == "20300101T01:00:00Z"
        session.xenapi.session.logout()


def test_vm_metrics_and_snapshots_are_stamped_by_the_toolstacks_clock() -> None:
    clock = FakeClock()
    with simulated_pool(clock=clock) as pool:
        session = login(pool)
        x = session.xenapi
        vm = halted_vm(x)
        assert str(x.VM_metrics.get_install_time(x.VM.get_metrics(vm))) == "20300101T00:00:00Z"
        clock.advance(60)
        snapshot = x.VM.snapshot(vm, "snap", [])
        assert str(x.VM.get_snapshot_time(snapshot)) == "20300101T00:01:00Z"
        clock.advance(60)
        x.VM.start(vm, False, False)
        x.VM.hard_shutdown(vm)
        assert str(x.VM_metrics.get_last_updated(x.VM.get_metrics(vm))) == "20300101T00:02:00Z"
        session.xenapi.session.logout()


def test_the_backend_given_is_the_one_used_per_toolstack() -> None:
    given = SimulatorBackend()
    mine, other = Toolstack(None, backend=given), Toolstack(None)
    assert hypervisor(mine).backend is given
    assert hypervisor(other).backend is not given  # no registry shared between toolstacks
    assert isinstance(hypervisor(other).backend, SimulatorBackend)


def test_the_configuration_reaches_the_default_backend() -> None:
    toolstack = Toolstack(None, config=ToolstackConfig(guest_agent_delay=7.5))
    simulator = hypervisor(toolstack).simulator
    assert simulator is not None and simulator.guest_agent_delay == 7.5
    with pytest.raises(ValueError, match="qemu"):
        Toolstack(None, config=ToolstackConfig(backend="qemu"))


def test_only_the_command_line_and_the_kit_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XENSTACK_GUEST_AGENT_DELAY", "0.25")
    monkeypatch.setenv("XENSTACK_PLUGIN_TIMEOUT", "3")
    monkeypatch.setenv("XENSTACK_PLUGIN_DIR", "/a:/b")
    monkeypatch.setenv("XENSTACK_EXTENSION_DIR", "/c")
    simulator = hypervisor(Toolstack(None)).simulator
    assert simulator is not None and simulator.guest_agent_delay == 1.0  # env not read here
    import os

    config = from_environment(os.environ)
    assert config.guest_agent_delay == 0.25 and config.plugin_timeout == 3.0
    assert config.plugin_dirs == (Path("/a"), Path("/b"))
    assert config.extension_dirs == (Path("/c"),)
    assert from_environment({}) == ToolstackConfig()
