"""Flows over the bridge's OpenFlow socket (net/ovs/openflow.py): what vswitchd holds after
them is what it holds after ``ovs-ofctl add-flows`` of the same text; deletes take only one
port's flows of our cookie; the switch's errors come back as SwitchError."""

from __future__ import annotations

import asyncio
import re
import struct

import pytest

from xenstack.net import BridgeSpec, Locking, SwitchError
from xenstack.net import flows as flowlib
from xenstack.net.ovs.openflow import HEADER, delete_mod, flow_mod
from xenstack.testing.network import SwitchKit, sh

LOCKED = Locking("locked", "02:00:00:00:00:01", ("10.0.0.5", "10.0.0.6"), ("fe80::1",))


def test_messages_have_the_length_they_say_and_whole_8_byte_matches() -> None:
    for flow in flowlib.locking_flows(7, LOCKED):
        data = flow_mod(flow, 9)
        version, kind, length, xid = HEADER.unpack(data[:8])
        assert (version, kind, length, xid) == (4, 14, len(data), 9)
        match_len = struct.unpack("!H", data[50:52])[0]
        assert (match_len + 7) // 8 * 8 + 48 <= length
    assert HEADER.unpack(delete_mod(3, 7, 1)[:8])[1:] == (14, len(delete_mod(3, 7, 1)), 3)
    with pytest.raises(SwitchError):
        flow_mod("in_port=1,tun_id=5,action=normal", 1)  # a field this writer does not know
    with pytest.raises(SwitchError):
        flow_mod("in_port=1,action=output:3", 1)


def _same(lines: list[str]) -> list[str]:
    return sorted(re.sub(r"(duration|idle_age)=[^,]*, ", "", line) for line in lines)


@pytest.mark.ovs
@pytest.mark.root
def test_native_flows_are_those_ovs_ofctl_makes(ovs_kit: SwitchKit) -> None:
    async def body() -> None:
        sw = ovs_kit.switch
        await sw.start()
        try:
            await sw.ensure_bridge(BridgeSpec("xenbr0", "n0"))
            rules = flowlib.locking_flows(7, LOCKED)
            await sw._add_flows("xenbr0", rules)  # over OpenFlow
            native = _same([f for f in await sw.flows("xenbr0") if "cookie=0x1" in f])
            await sw._ofctl("del-flows", "xenbr0", "cookie=1/-1")
            await sw._ofctl("add-flows", "xenbr0", "-", stdin="\n".join(rules) + "\n")
            by_ofctl = _same([f for f in await sw.flows("xenbr0") if "cookie=0x1" in f])
            assert native == by_ofctl and len(native) == len(rules)
            await sw._add_flows("xenbr0", flowlib.locking_flows(8, LOCKED))
            await sw._del_flows_of("xenbr0", 7)
            left = await sw.flows("xenbr0")
            assert not [f for f in left if "in_port=7" in f]
            assert [f for f in left if "in_port=8" in f]
            assert [f for f in left if "cookie=0x0" in f]  # the bridge's own NORMAL flow
            bad = "cookie=1,in_port=1,dl_type=0x0800,nd_sll=02:00:00:00:00:01,action=normal"
            with pytest.raises(SwitchError, match="OpenFlow error"):
                await sw._add_flows("xenbr0", [bad])  # nd_sll without its prerequisites
            await sw._add_flows("xenbr0", flowlib.locking_flows(9, LOCKED))  # still usable
            assert [f for f in await sw.flows("xenbr0") if "in_port=9" in f]
            # the bridge deleted by hand and made again: the kept connection is to a bridge
            # that is gone, and the next write goes over a new one
            sh(sw.daemons.vsctl("del-br", "xenbr0"), check=True)
            await sw.ensure_bridge(BridgeSpec("xenbr0", "n0"))
            await sw._add_flows("xenbr0", flowlib.locking_flows(10, LOCKED))
            assert [f for f in await sw.flows("xenbr0") if "in_port=10" in f]
        finally:
            await sw.stop()

    asyncio.run(body())


@pytest.mark.ovs
@pytest.mark.root
def test_a_bridge_without_openflow_13_gets_its_flows_through_ovs_ofctl(
    ovs_kit: SwitchKit,
) -> None:
    async def body() -> None:
        sw = ovs_kit.switch
        await sw.start()
        try:
            await sw.ensure_bridge(BridgeSpec("xenbr0", "n0"))
            sh(sw.daemons.vsctl("set", "bridge", "xenbr0", "protocols=OpenFlow10"))
            await sw._add_flows("xenbr0", flowlib.locking_flows(7, LOCKED))
            assert [f for f in await sw.flows("xenbr0") if "in_port=7" in f]
            await sw._del_flows_of("xenbr0", 7)
            assert not [f for f in await sw.flows("xenbr0") if "in_port=7" in f]
        finally:
            await sw.stop()

    asyncio.run(body())
