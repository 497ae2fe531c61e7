"""Shared fixtures: the shipped test kit, used as an outside project would use it.

Modules that build their own pool (a ``pool`` fixture, e.g. with extra simulated hosts) get
``x``, a logged-in SDK ``xenapi`` proxy on that pool, from here; a module-level
``GUEST_AGENT_DELAY`` (seconds) makes the simulated guest agents of its tests report that fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from vmkit import login

from xenstack.testing import RunningPool

pytest_plugins = ["xenstack.testing.fixtures"]


@pytest.fixture
def session(xenstack_pool: RunningPool) -> Iterator[Any]:
    """A logged-in XenAPI SDK session (XML-RPC) on a fresh pool."""
    s = XenAPI.Session(xenstack_pool.url)
    s.xenapi.login_with_password("root", xenstack_pool.password, "1.0", "xenstack-tests")
    yield s
    try:
        s.xenapi.session.logout()
    finally:
        s.close() if hasattr(s, "close") else None


@pytest.fixture
def x(pool: RunningPool, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The SDK ``xenapi`` proxy of a root session on the module's own ``pool`` fixture."""
    yield from login(pool, request.module.__name__)


@pytest.fixture(autouse=True)
def guest_agent_delay(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set XENSTACK_GUEST_AGENT_DELAY from the module's GUEST_AGENT_DELAY, if it has one.

    Autouse and function-scoped, so it is in place before a test's own pool is made.
    """
    delay = getattr(request.module, "GUEST_AGENT_DELAY", None)
    if delay is not None:
        monkeypatch.setenv("XENSTACK_GUEST_AGENT_DELAY", str(delay))
