"""The parts a toolstack is built from by name: its hypervisor backend and its switch."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.config import DEFAULT_QEMU_USER, ToolstackConfig
from ..net import Switch
from ..net.ovs import OvsDaemons, OvsSwitch
from ..net.simulated import SimulatedSwitch
from ..xenops.interface import Backend, PortHooks
from ..xenops.simulator import SimulatorBackend

BACKENDS = ("simulator", "qemu")


def make_backend(
    config: ToolstackConfig,
    state_dir: Path | None = None,
    hooks: PortHooks | None = None,
    name: str = "",
) -> Backend:
    """The backend ``name`` (else ``config.backend``) names, configured from ``config``.

    ``qemu`` keeps its domains' files under ``state_dir`` and plugs VIFs with ``hooks`` (the
    switch's; without them, taps on Linux bridges), in ``config.netns`` if set."""
    name = name or config.backend
    if name == "simulator":
        return SimulatorBackend(guest_agent_delay=config.guest_agent_delay)
    if name == "qemu":
        if state_dir is None:
            raise ValueError("the qemu backend needs a state directory")
        from ..xenops.qemu.backend import QemuBackend

        runas = config.qemu_user
        if runas is None:  # root's guests do not run as root
            runas = DEFAULT_QEMU_USER if os.geteuid() == 0 else ""
        return QemuBackend(str(state_dir), netns=config.netns, hooks=hooks, runas=runas)
    raise ValueError(f"no such hypervisor backend: {name!r}")


def make_switch(config: ToolstackConfig, state_dir: Path | None) -> Switch:
    """The switch ``config.switch`` names: ``simulated`` (in memory) or ``openvswitch`` (the
    system's when one runs, else private daemons under ``state_dir/ovs``)."""
    if config.switch == "simulated":
        return SimulatedSwitch()
    if config.switch == "openvswitch":
        if state_dir is None:
            raise ValueError("an Open vSwitch switch needs a state directory")
        daemons = OvsDaemons(state_dir, netns=config.netns, ovsdb_tcp=config.ovsdb_tcp)
        return OvsSwitch(daemons)
    raise ValueError(f"no such switch: {config.switch!r}")
