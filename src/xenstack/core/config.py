"""The toolstack's configuration, as one value handed to the composition root.

Nothing below the command line reads the environment: ``xenstack`` (``cli/main.py``) and the
test kit (``xenstack.testing``) build a :class:`ToolstackConfig`, from their options and from
:func:`from_environment`, and give it to ``Toolstack``; server functions read it as
``ctx.toolstack.config``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SESSION_IDLE_TIMEOUT = 24 * 3600.0
GUEST_AGENT_DELAY = 1.0
PLUGIN_TIMEOUT = 300.0

# The environment variables users set, and the field each one fills.
GUEST_AGENT_DELAY_ENV = "XENSTACK_GUEST_AGENT_DELAY"
PLUGIN_TIMEOUT_ENV = "XENSTACK_PLUGIN_TIMEOUT"
PLUGIN_DIR_ENV = "XENSTACK_PLUGIN_DIR"
EXTENSION_DIR_ENV = "XENSTACK_EXTENSION_DIR"
SWITCH_ENV = "XENSTACK_SWITCH"
NETNS_ENV = "XENSTACK_NETNS"
OVSDB_TCP_ENV = "XENSTACK_OVSDB_TCP"
BACKEND_ENV = "XENSTACK_BACKEND"
QEMU_USER_ENV = "XENSTACK_QEMU_USER"
DEFAULT_QEMU_USER = "xenstack-qemu"


@dataclass(frozen=True, slots=True)
class ToolstackConfig:
    """How one toolstack behaves; every field has the default ``xenstack serve`` uses.

    ``backend`` names the hypervisor backend the composition root builds when it is given
    none (``"simulator"``, or ``"qemu"``: real guests; a state keeps the one it was
    initialised with); ``netns`` is the network namespace the qemu backend runs QEMU in;
    ``guest_agent_delay`` is how long the simulator's guest agents take to report after a
    boot (seconds). ``plugin_dirs`` and ``extension_dirs`` are searched before the state
    directory's own ``plugins/`` and ``extensions/``.
    """

    backend: str = "simulator"
    session_timeout: float = SESSION_IDLE_TIMEOUT
    guest_agent_delay: float = GUEST_AGENT_DELAY
    plugin_timeout: float = PLUGIN_TIMEOUT
    plugin_dirs: tuple[Path, ...] = ()
    extension_dirs: tuple[Path, ...] = ()
    # the virtual switch: "simulated" (in memory) or "openvswitch"; the network namespace
    # its daemons and ports live in ("" for the host's own); a further OVSDB remote
    # ("ptcp:6640:127.0.0.1") for a private switch
    switch: str = "simulated"
    netns: str = ""
    ovsdb_tcp: str = ""
    # Variables every plug-in (and ``xenstack shell``) gets besides dom0's own: how its
    # tools reach this host's services, e.g. ("OVS_RUNDIR", dir) for the host's switch.
    plugin_env: tuple[tuple[str, str], ...] = ()
    rrd_step: float = 5.0  # seconds between metric samples; 0: none in the background
    # the system user the qemu backend runs QEMU as (``-runas``; made if missing), "" for
    # the toolstack's own; None: DEFAULT_QEMU_USER when the toolstack runs as root
    qemu_user: str | None = None


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in text.split(os.pathsep) if p)


def from_environment(
    environ: Mapping[str, str], base: ToolstackConfig | None = None
) -> ToolstackConfig:
    """``base`` (the defaults) with what the ``XENSTACK_*`` variables in ``environ`` set.

    Only the command line and the test kit call this, with ``os.environ``.
    """
    config = base or ToolstackConfig()
    changes: dict[str, Any] = {}
    if environ.get(GUEST_AGENT_DELAY_ENV):
        changes["guest_agent_delay"] = float(environ[GUEST_AGENT_DELAY_ENV])
    if environ.get(PLUGIN_TIMEOUT_ENV):
        changes["plugin_timeout"] = float(environ[PLUGIN_TIMEOUT_ENV])
    if environ.get(PLUGIN_DIR_ENV):
        changes["plugin_dirs"] = _paths(environ[PLUGIN_DIR_ENV])
    if environ.get(EXTENSION_DIR_ENV):
        changes["extension_dirs"] = _paths(environ[EXTENSION_DIR_ENV])
    for env, name in ((SWITCH_ENV, "switch"), (NETNS_ENV, "netns"), (OVSDB_TCP_ENV, "ovsdb_tcp")):
        if environ.get(env):
            changes[name] = environ[env]
    if environ.get(BACKEND_ENV):
        changes["backend"] = environ[BACKEND_ENV]
    if QEMU_USER_ENV in environ:  # set and empty: QEMU as the toolstack's own user
        changes["qemu_user"] = environ[QEMU_USER_ENV]
    return replace(config, **changes)


# The switch options ``init`` keeps in the state (meta key = field name), as it keeps the
# backend: ``serve`` and the tools beside it bring them back unless told otherwise.
REMEMBERED_SWITCH = ("switch", "netns", "ovsdb_tcp")


def remembered(config: ToolstackConfig, stored: Callable[[str], str | None]) -> ToolstackConfig:
    """``config`` with the switch options the state keeps (``stored(name)``) for the fields
    it leaves at their defaults: an option given (or a variable set) wins over the state."""
    defaults = ToolstackConfig()
    changes: dict[str, Any] = {}
    for name in REMEMBERED_SWITCH:
        value = stored(name)
        if value and getattr(config, name) == getattr(defaults, name):
            changes[name] = value
    return replace(config, **changes) if changes else config


def to_remember(config: ToolstackConfig, switch_kind: str, netns: str) -> dict[str, str]:
    """What :func:`remembered` will read back: the switch a state was initialised with."""
    return {"switch": switch_kind, "netns": netns, "ovsdb_tcp": config.ovsdb_tcp}
