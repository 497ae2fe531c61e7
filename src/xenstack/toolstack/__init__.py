"""One host's toolstack: the database, sessions, tasks, the dispatcher and the HTTP server.

``Toolstack.initialise(state_dir)`` creates the state (``xenstack init``); ``start`` serves it.
Everything lives under the state directory: ``xapi.db`` (SQLite), ``root-password``, ``tls/``.
The directory is its owner's alone (0700) and so is everything in it: ``xapi.db`` (password
hashes, the pool secret) is created 0600 before SQLite opens it (its -wal and -shm take its
mode), and a state found with group or other access has it taken away at start. The directory
is kept as an absolute path, since SR paths under it are stored.

This is the composition root: every dependency of the layers below is made or received here
and handed down, never looked up. A ``Toolstack`` is given

- ``config``: a :class:`ToolstackConfig` (timeouts, plug-in and extension directories, the
  backend's name and the simulator's guest-agent delay). The command line and the test kit
  build it from their options and the ``XENSTACK_*`` environment
  (:func:`xenstack.core.config.from_environment`); nothing below reads the environment.
- ``backend``: the hypervisor backend (a :class:`xenstack.xenops.interface.Backend`), by
  default the one :func:`make_backend` builds from ``config.backend``. A backend is given
  nothing but calls: hosts (``host_add``) as the database names them, domain specs to build,
  and one listener (``on_guest_report``) that records what its guests' agents report. It
  never sees the database. ``xenstack serve --backend NAME`` will set ``config.backend``;
  :func:`make_backend` maps each name to its constructor (``"simulator"`` only, for now: a
  QEMU backend adds its name there and nothing else changes).
- ``clock``: a :class:`xenstack.core.clock.Clock` for the dates the toolstack stamps (tasks,
  messages, sessions, guest metrics); :class:`SystemClock` by default, a
  ``xenstack.testing.FakeClock`` in tests.
- ``sr_drivers``: the :class:`xenstack.storage.sr.SrDrivers` registry, SR driver kind ->
  factory, that builds every SR's driver (``impl.storage.sr_backend.driver_of`` asks it,
  reached as ``ctx.toolstack.sr_drivers``); by default
  :data:`~xenstack.storage.sr.DEFAULT_DRIVERS`: ``file``, ``shared``, ``iso`` and ``sizes``
  (the sizes-only simulated SRs, and every SR whose ``sm_config`` names no kind). A real
  LVM or NFS driver is one more kind in the registry given here.

The toolstack makes its :class:`Hypervisor` from the backend (``impl.host.hypervisor``
reaches it as ``hypervisor(ctx)``, i.e. ``ctx.toolstack.hypervisor``).

The package's modules: :mod:`.root` (the :class:`Toolstack`), :mod:`.state` (the private
state directory and its database), :mod:`.parts` (backends and switches by name),
:mod:`.guests` (each host's XenStore and the guest channel), :mod:`.metrics` (the RRD
archives and their handlers' answers) and :mod:`.routes` (the guarded HTTP surface).
"""

from __future__ import annotations

from ..core.config import SESSION_IDLE_TIMEOUT, ToolstackConfig
from .parts import BACKENDS, make_backend, make_switch
from .root import Toolstack
from .state import make_private, open_etcd_persistence, open_persistence, write_secret

__all__ = [
    "BACKENDS",
    "SESSION_IDLE_TIMEOUT",
    "Toolstack",
    "ToolstackConfig",
    "make_backend",
    "make_private",
    "make_switch",
    "open_etcd_persistence",
    "open_persistence",
    "write_secret",
]
