"""Integration tests: real guests across the QEMU backend, Open vSwitch and XenStore.

This folder is NOT a mirror of src/xenstack: each test here crosses several packages at once
(xenops/qemu, net/ovs, impl/network, xenstore, plugins) through the composition root, over the
wire with the PyPI XenAPI SDK. The host and its networks are made by ``integkit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from integkit import OvsQemuHost, ovs_qemu_host, sdk_session
from systools import require_root, require_tool


def need_tools() -> None:
    for tool in ("qemu-system-x86_64", "dnsmasq", "ethtool", "ovs-vsctl", "ovsdb-server",
                 "ovs-vswitchd", "ovsdb-tool", "ovsdb-client", "ovs-ofctl", "openssl"):  # fmt: skip
        require_tool(tool)
    require_root()


@pytest.fixture(scope="module")
def host() -> Iterator[OvsQemuHost]:
    need_tools()
    with ovs_qemu_host(vlans=(100, 200)) as h:
        yield h


@pytest.fixture(scope="module")
def x(host: OvsQemuHost) -> Iterator[Any]:
    with sdk_session(host) as xenapi:
        yield xenapi
