"""What xenstack's own dom0 plug-ins share (importable as ``dom0_utils`` by plug-ins).

The OpenStack plug-ins speak os-xenapi 0.3.x's protocol: functions registered with
:func:`register_plugin_calls` take one argument, ``params``, a pickle (protocol 0, as
Python 2 wrote it) of ``{"args": [...], "kwargs": {...}}``, and answer a pickle of their
result; :func:`jsonify` functions take the plain argument dict and answer JSON. Pickles
are read with an unpickler that builds only plain data (no classes, no callables), so a
caller cannot make dom0 run code through them.

Plug-ins reach XenStore and the host through dom0's tools on their ``PATH``
(``xenstore-*``, ``vhd-util``, ``xe``), as XenServer's plug-ins do. Modules only some calls
need (``subprocess``, ``json``) are imported by those calls: a plug-in's start is its cost.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
from collections.abc import Callable
from typing import Any

import XenAPIPlugin


class PluginError(XenAPIPlugin.PluginError):
    pass


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: {module}.{name} (plain data only)")


def loads(text: str) -> Any:
    """A protocol-0 (or later) pickle of plain data, as os-xenapi's client sends it."""
    return _DataOnly(io.BytesIO(text.encode("latin-1")), encoding="latin-1").load()


def dumps(value: Any) -> str:
    """``value`` as os-xenapi's dom0 side answers: a protocol-0 pickle, as text."""
    return pickle.dumps(value, protocol=0).decode("latin-1")


Handler = Callable[..., Any]


def register_plugin_calls(*funcs: Handler) -> None:
    """Dispatch to ``funcs`` by name with os-xenapi's pickled calling convention."""

    def wrap(fn: Handler) -> Callable[[Any, dict[str, str]], str]:
        def call(session: Any, args: dict[str, str]) -> str:
            params = loads(args.get("params", "")) if args.get("params") else {}
            if not isinstance(params, dict):
                raise PluginError("params is not a pickled dict")
            return dumps(fn(session, *params.get("args", ()), **params.get("kwargs", {})))

        return call

    XenAPIPlugin.dispatch({fn.__name__: wrap(fn) for fn in funcs})


def jsonify(fn: Handler) -> Callable[[Any, dict[str, str]], str]:
    """A plain function ``fn(session, arg_dict)`` answering JSON."""

    def call(session: Any, arg_dict: dict[str, str]) -> str:
        import json

        return json.dumps(fn(session, arg_dict))

    call.__name__ = fn.__name__
    return call


def _run(cmd: list[str], cmd_input: str | None = None) -> Any:
    import subprocess

    return subprocess.run(cmd, input=cmd_input, capture_output=True, text=True, timeout=600)


def in_dom0_net(cmd: list[str]) -> list[str]:
    """``cmd`` run in dom0's network: the toolstack's namespace (``XENSTACK_NETNS``) if it
    has one, so that a plug-in never touches the machine's own interfaces or firewall."""
    netns = os.environ.get("XENSTACK_NETNS", "")
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def run_command(cmd: list[str], cmd_input: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
    """Run ``cmd`` (no shell); its stdout, or PluginError with its stderr."""
    proc = _run(cmd, cmd_input)
    if proc.returncode not in ok:
        raise PluginError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


class XenstoreError(PluginError):
    pass


def xenstore_read(path: str) -> str | None:
    proc = _run(["xenstore-read", "-R", path])
    return proc.stdout[:-1] if proc.returncode == 0 else None


def xenstore_write(path: str, value: str) -> None:
    proc = _run(["xenstore-write", "-R", path, value])
    if proc.returncode != 0:
        raise XenstoreError(proc.stderr.strip())


def xenstore_rm(path: str) -> None:
    proc = _run(["xenstore-rm", path])
    if proc.returncode != 0:
        raise XenstoreError(proc.stderr.strip())


def xenstore_list(path: str) -> list[str] | None:
    proc = _run(["xenstore-list", path])
    return proc.stdout.split() if proc.returncode == 0 else None


def vhd_util(*args: str) -> str:
    proc = _run(["vhd-util", *args])
    if proc.returncode != 0:
        raise PluginError(f"vhd-util {args[0]}: {proc.stdout}{proc.stderr}".strip())
    return proc.stdout


def import_vhds(sr_path: str, staging: str, uuid_stack: list[str]) -> dict[str, dict[str, str]]:
    """Move the chain ``0.vhd`` (leaf), ``1.vhd`` ... (and ``swap.vhd``) of ``staging`` into
    ``sr_path`` as ``<uuid>.vhd``, uuids popped from ``uuid_stack``, each re-pointed at its
    renamed parent and the chain checked first; answer os-xenapi's ``{"root": {"uuid"}}``."""
    numbered = sorted(int(n[:-4]) for n in os.listdir(staging) if n[:-4].isdigit())
    if numbered != list(range(len(numbered))) or not numbered:
        raise PluginError(f"the image holds no 0.vhd..N.vhd chain: {numbered}")
    uuids = [uuid_stack.pop() for _ in numbered]
    for i, uuid in enumerate(uuids):
        os.rename(os.path.join(staging, f"{i}.vhd"), os.path.join(staging, f"{uuid}.vhd"))
    for child, parent in itertools.pairwise(uuids):
        vhd_util("modify", "-n", os.path.join(staging, f"{child}.vhd"),
                 "-p", os.path.join(staging, f"{parent}.vhd"))  # fmt: skip
    vhd_util("check", "-n", os.path.join(staging, f"{uuids[0]}.vhd"), "-p")
    imported = {"root": {"uuid": uuids[0]}}
    if os.path.exists(os.path.join(staging, "swap.vhd")):
        swap = uuid_stack.pop()
        os.rename(os.path.join(staging, "swap.vhd"), os.path.join(staging, f"{swap}.vhd"))
        uuids.append(swap)
        imported["swap"] = {"uuid": swap}
    for uuid in reversed(uuids):  # parents first: a leaf never shows without its chain
        os.rename(os.path.join(staging, f"{uuid}.vhd"), os.path.join(sr_path, f"{uuid}.vhd"))
    return imported


# ---- VDIs in dom0 (kernel.py, partition_utils.py) ----------------------------------------


def make_dev_path(dev: str, partition: int | None = None, base: str = "/dev") -> str:
    """``/dev/<dev>`` (``/dev/<dev>p<n>`` for partition ``n``); ``dev`` a bare device name."""
    dev = str(dev)
    if not dev or "/" in dev or dev.startswith("."):
        raise PluginError(f"bad device name: {dev!r}")
    path = os.path.join(base, dev)
    return f"{path}p{partition}" if partition is not None else path


def this_control_domain(session: Any) -> str:
    """The control domain of the host the plug-in runs on (the caller's session's host)."""
    xenapi = session.xenapi
    host = xenapi.session.get_this_host(session._session)
    return str(xenapi.host.get_control_domain(host))


def with_vdi_in_dom0(session: Any, vdi: str, read_only: bool, fn: Callable[[str], Any]) -> Any:
    """``fn(device)`` with ``vdi`` plugged into dom0 (``/dev/<device>``), unplugged and its
    VBD destroyed afterwards whatever happens."""
    xenapi = session.xenapi
    record = {
        "VM": this_control_domain(session),
        "VDI": vdi,
        "userdevice": "autodetect",
        "bootable": False,
        "mode": "RO" if read_only else "RW",
        "type": "Disk",
        "unpluggable": True,
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    vbd = xenapi.VBD.create(record)
    try:
        xenapi.VBD.plug(vbd)
        try:
            return fn(str(xenapi.VBD.get_device(vbd)))
        finally:
            xenapi.VBD.unplug(vbd)
    finally:
        xenapi.VBD.destroy(vbd)
