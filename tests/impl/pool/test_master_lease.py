"""The master keeps its key through failed renewals: a failed keep-alive is tried again soon.

On a loaded machine a keep-alive can miss its window; two such in a row, a whole period
apart, let the master's lease expire under a master that was well (seen in CI: writes then
failed with "this host is no longer the pool master"). The master's renewal loop runs here
against a lease that fails as told, its pauses recorded.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from xenstack.db.etcd import renew_pause
from xenstack.impl.pool import election

TTL = 8


class FlakyLease:
    """Answers each renewal from a script: an exception to raise, or the TTL left."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0

    def renew(self) -> int:
        self.calls += 1
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return int(answer)

    def resign(self) -> None:
        raise AssertionError("the master resigned")


def hold(script: list[Any], monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[str]]:
    """Run the master's loop on ``script``; the pauses it took and what it did at the end."""
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(election.asyncio, "sleep", sleep)
    ended: list[str] = []
    ts = SimpleNamespace(master_address="")
    agent = election.MasterAgent(ts, SimpleNamespace(fence=1), TTL, lambda: ended.append("restart"))  # type: ignore[arg-type]
    asyncio.run(asyncio.wait_for(agent._hold(FlakyLease(script)), 10))  # type: ignore[arg-type]
    return pauses, ended


def test_a_failed_renewal_is_retried_soon_and_the_key_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = ConnectionError("no etcd member renewed the lease in time")
    pauses, ended = hold([TTL, lost, lost, TTL, 0], monkeypatch)
    regular, retry = renew_pause(TTL, False), renew_pause(TTL, True)
    assert pauses == [regular, regular, retry, retry, regular]
    # the two failed tries and the one that renewed all fall well within the TTL
    assert regular + 2 * retry < TTL / 2
    assert ended == ["restart"]  # only once etcd answered that the lease was gone


def test_a_lease_gone_makes_the_master_campaign_again(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses, ended = hold([0], monkeypatch)
    assert pauses == [renew_pause(TTL, False)] and ended == ["restart"]
