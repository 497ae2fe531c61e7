"""Running the system's networking tools (ip, ovs-ofctl, ovs-appctl, dnsmasq) as processes."""

from __future__ import annotations

import asyncio
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
) -> str:
    """Run ``argv``; its standard output, or SwitchError with its standard error."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env} if env else None,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() or None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SwitchError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise SwitchError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` ("" for the host's own namespace)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
