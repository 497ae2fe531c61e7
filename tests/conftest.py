"""Shared fixtures: the shipped test kit, used as an outside project would use it.

Modules that build their own pool (a ``pool`` fixture, e.g. with extra simulated hosts) get
``x``, a logged-in SDK ``xenapi`` proxy on that pool, from here. A module whose guests must
report at a chosen pace gives its pool ``simulated_pool(guest_agent_delay=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from xenstack.testing import RunningPool, logged_in

pytest_plugins = ["xenstack.testing.fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """How ``pytest -n 2 --dist loadgroup`` (what ``.ci/run`` runs) shares the tests out:
    a module stays on one worker (its module-scoped pool is made once), every real-guest
    test runs on one worker (TCG boots want a core each, one at a time) and every pool, HA
    and etcd test on one worker (their timing is the point), so the two kinds of heavy test
    overlap each other rather than themselves."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if item.get_closest_marker("guest") or path.startswith("tests/integration/"):
            group = "guests"
        elif item.get_closest_marker("etcd") or path.startswith(("tests/ha/", "tests/impl/pool/")):
            group = "pools"
        else:
            group = path
        item.add_marker(pytest.mark.xdist_group(group))


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
    yield from logged_in(pool, request.module.__name__)
