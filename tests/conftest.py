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


GUESTS = ("tests/integration/", "tests/xenops/test_conformance.py", "tests/xenops/qemu/test_guest_")
POOLS = ("tests/ha/", "tests/impl/pool/", "tests/db/test_etcd.py", "tests/testing/test_chaos.py")


def group_of(path: str) -> str:
    """Which worker queue a test file joins under ``pytest -n 2`` (what ``.ci/run`` runs):
    every real-guest module on one worker (TCG boots want a core each, one at a time),
    every pool, HA and etcd module on one worker (their timing is the point), so that the two
    kinds of heavy test overlap each other rather than themselves; any other module alone,
    so its module-scoped pool is made once."""
    if path.startswith(GUESTS):
        return "guests"
    if path.startswith(POOLS):
        return "pools"
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # xdist's own ``loadgroup`` reads its marks through a node id that pytest 9 no longer
    # lets it rewrite, so the groups are made here, from the path, on the controller.
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid.split("::", 1)[0])

    return ByGroup(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A real-guest or etcd test outside the paths of its group would share a core with its
    own kind: refuse it at collection."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if item.get_closest_marker("guest") and group_of(path) != "guests":
            raise pytest.UsageError(f"{path}: a guest test outside conftest.GUESTS")
        if item.get_closest_marker("etcd") and group_of(path) != "pools":
            raise pytest.UsageError(f"{path}: an etcd test outside conftest.POOLS")


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
