"""Running the system's networking tools (ip, ovs-ofctl, ovs-appctl, dnsmasq) as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence

from .model import SwitchError

TIMEOUT = 60.0


async def run(
    argv: Sequence[str],
    *,
    stdin: str = "",
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = TIMEOUT,
    detaches: bool = False,
) -> str:
    """Run ``argv``; its standard output, or SwitchError with its standard error.

    A daemon that ``detaches`` keeps whatever output it was given, so it gets none: pipes
    would never reach their end (its own log file says what went wrong)."""
    quiet = asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=quiet if detaches else asyncio.subprocess.PIPE,
        stderr=quiet if detaches else asyncio.subprocess.PIPE,
        env={**os.environ, **env} if env else None,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() or None), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise SwitchError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        detail = err.decode(errors="replace").strip() if err else f"exit {proc.returncode}"
        raise SwitchError(f"{' '.join(argv)}: {detail}")
    return out.decode(errors="replace") if out else ""


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` ("" for the host's own namespace)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
