"""Helpers for the ``xe`` tests: run xe in-process, compare with goldens, the pools they use.

uuids, references and timestamps are normalised before a comparison with a golden file;
``XE_UPDATE_GOLDEN=1`` rewrites the goldens instead.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import XenAPI

from xenstack.cli.xe import main
from xenstack.testing import RunningPool, factories, simulated_pool

GOLDEN = Path(__file__).parent / "cli" / "golden" / "xe"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REF = re.compile(r"OpaqueRef:[0-9a-zA-Z-]+")
DATE = re.compile(r"\d{8}T\d\d:\d\d:\d\dZ")


def normalise(text: str) -> str:
    return DATE.sub("<date>", REF.sub("<ref>", UUID.sub("<uuid>", text)))


def xe(pool: RunningPool, *args: str) -> tuple[int, str, str]:
    """Run xe in-process against ``pool``; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    extra = f"server=127.0.0.1,port={pool.port},username=root,password={pool.password}"
    old = os.environ.get("XE_EXTRA_ARGS")
    os.environ["XE_EXTRA_ARGS"] = extra
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        if old is None:
            del os.environ["XE_EXTRA_ARGS"]
        else:
            os.environ["XE_EXTRA_ARGS"] = old
    return rc, out.getvalue(), err.getvalue()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    text = normalise(text)
    if os.environ.get("XE_UPDATE_GOLDEN") or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"golden {path.name} differs"


def transcript(pool: RunningPool, *commands: list[str]) -> str:
    """Each command, its exit status, stdout and stderr, as one text."""
    parts = []
    for cmd in commands:
        rc, out, err = xe(pool, *cmd)
        parts.append(
            f"$ xe {' '.join(cmd)}\n[exit {rc}]\n{out}" + (f"[stderr]\n{err}" if err else "")
        )
    return "\n".join(parts)


# A complete VM.create record as the xe tests (and their golden files) know it: 1 GiB, 1 VCPU.
vm_record = functools.partial(
    factories.vm_record, memory=1 << 30, memory_static_min=str(1 << 30), VCPUs_max="1",
    PV_bootloader="",
)  # fmt: skip


def api(pool: RunningPool) -> Any:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xe-tests")
    return session


def one(pool: RunningPool, *args: str) -> str:
    """Run a command that must succeed; its stdout, stripped."""
    rc, out, err = xe(pool, *args)
    assert rc == 0, (args, err)
    return out.strip()


@contextlib.contextmanager
def two_host_pool(state: Path, instant_agent: bool = False) -> Iterator[RunningPool]:
    """A two-host simulated pool with sizes-only storage and a shared SR, its state in ``state``.

    ``instant_agent``: guest agents report PV drivers at once (for VCPU hot-plug and live
    migration).
    """
    delay = 0.0 if instant_agent else None
    with simulated_pool(state, hosts=2, sim_storage=True, guest_agent_delay=delay) as running:
        yield running
