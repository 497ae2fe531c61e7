#!/usr/bin/env python3
"""xenstack-nova's spawn of a real guest on a qemu host, against VM.start of the same guest.

    sudo .venv-openstack/bin/python bench/bench_nova_spawn.py [--rounds 3]

Run as root with the OpenStack virtualenv's interpreter (nova and xenstack-nova installed
there). The host is ``openstack/tests/qemu_xenstack.py`` (a qemu host on Open vSwitch, DHCP
beyond its PIF, served by the project's interpreter); the image is the test guest as a
bootable raw disk (``boot_image.py``) in the standalone Glance; the VIF driver puts the port
on the untagged network.

Per round: the driver's ``spawn`` (image import through ``vdi_remote_stream``, VM and VIF,
``VM.start_on``, the wait for the guest's agent), timed to the guest's IP in its guest
metrics; then the same VM is shut down and started again through the SDK (``VM.start``),
timed to its IP (the baseline, measured in the same run). Target: spawn-to-IP <= 1.3x
start-to-IP. The breakdown names where the difference goes: the image import, building the
VM, the start, the agent's first report and the IP after it.
"""

from __future__ import annotations

# nova.tests before nova: nova aborts in native-threading mode otherwise
from nova.tests.unit import utils as _test_utils  # noqa: F401

# isort: split

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "openstack" / "tests"))

import glance_server  # noqa: E402
import guest_host  # noqa: E402
import nova.conf  # noqa: E402
import xenstack_nova.driver  # noqa: E402 - registers the [xenserver] options
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova.image import glance as nova_glance  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from nova.virt import fake  # noqa: E402
from xenstack_nova import vm_utils  # noqa: E402

CONF = nova.conf.CONF
TARGET = 1.3


class Timed:
    """Wraps ``obj.name`` to add each call's seconds to ``spent[label]``."""

    def __init__(self, spent: dict[str, float]) -> None:
        self.spent = spent
        self.originals: list[tuple[Any, str, Any]] = []

    def restore(self) -> None:
        for obj, name, inner in reversed(self.originals):
            setattr(obj, name, inner)

    def wrap(self, obj: Any, name: str, label: str) -> None:
        inner = getattr(obj, name)
        self.originals.append((obj, name, inner))

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - t0

        setattr(obj, name, timed)


def instance_for(image_id: str, n: int) -> Any:
    flavor = objects.Flavor(name="n3.bench", memory_mb=256, vcpus=1, root_gb=1, ephemeral_gb=0,
                            swap=0, extra_specs={}, flavorid="n3")  # fmt: skip
    return objects.Instance(
        id=1000 + n, uuid=str(uuid.uuid4()), image_ref=image_id, flavor=flavor,
        system_metadata={}, metadata={}, project_id="n3", user_id="n3", host="n3-compute",
        task_state=None, vm_state="building", config_drive="", os_type="linux",
        display_name=f"n3-bench-{n}", hostname=f"n3-bench-{n}", key_data=None,
    )  # fmt: skip


def port() -> network_model.VIF:
    net = network_model.Network(id=str(uuid.uuid4()), bridge="xenbr0", label="net")
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:3])
    return network_model.VIF(id=str(uuid.uuid4()), address=mac, network=net, type="ovs")


def agent_up(x: Any, vm: str) -> bool:
    gm = x.VM.get_guest_metrics(vm)
    return gm != "OpaqueRef:NULL" and bool(x.VM_guest_metrics.get_PV_drivers_version(gm))


def one_round(drv: Any, x: Any, image_id: str, n: int) -> tuple[float, float, dict[str, float]]:
    spent: dict[str, float] = {}
    timer = Timed(spent)
    ops = drv._ops
    timer.wrap(ops.images, "download", "image import")
    timer.wrap(ops, "_build", "VM, disk and VIF (image import included)")
    timer.wrap(ops, "wait_agent", "the agent's first report")
    timer.wrap(vm_utils, "start", "VM.start_on")
    ctx = nova_context.RequestContext("n3", "n3", auth_token="x")
    instance = instance_for(image_id, n)
    meta = objects.ImageMeta.from_dict({"id": image_id, "disk_format": "raw",
                                        "container_format": "bare"})  # fmt: skip
    t0 = time.perf_counter()
    try:
        drv.spawn(ctx, instance, meta, [], None, {},
                  network_info=network_model.NetworkInfo([port()]))  # fmt: skip
        (vm,) = x.VM.get_by_name_label(instance.name)
        t_spawned = time.perf_counter()
        guest_host.guest_ip(x, vm)
        spawn_ip = time.perf_counter() - t0
        spent["the IP after spawn returned"] = time.perf_counter() - t_spawned
    finally:
        timer.restore()
    x.VM.hard_shutdown(vm)
    t1 = time.perf_counter()
    x.VM.start(vm, False, False)
    spent["baseline: VM.start returns"] = time.perf_counter() - t1
    guest_host.until(lambda: agent_up(x, vm), "the agent")
    spent["baseline: the agent's first report"] = time.perf_counter() - t1
    guest_host.guest_ip(x, vm)
    start_ip = time.perf_counter() - t1
    drv.destroy(ctx, instance, network_model.NetworkInfo([]), None, True)
    return spawn_ip, start_ip, spent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    reason = guest_host.missing()
    if reason:
        print(f"bench_nova_spawn: {reason}", file=sys.stderr)
        return 2
    CONF([], project="nova")
    objects.register_all()
    glance = glance_server.GlanceServer().start()
    host = guest_host.QemuHost()
    try:
        CONF.set_override("api_servers", [glance.url], group="glance")
        for key, value in host.flags().items():
            CONF.set_override(key, value, group="xenserver")
        CONF.set_override("vif_driver", "ovs", group="xenserver")
        CONF.set_override("ovs_integration_bridge", "xenbr0", group="xenserver")
        ctx = nova_context.RequestContext("n3", "n3", auth_token="x")
        image_id = guest_host.upload_guest_image(nova_glance.API(), ctx)
        drv = xenstack_nova.driver.XenAPIDriver(fake.FakeVirtAPI())
        drv.init_host("n3-compute")
        x = host.session().xenapi
        spawns, starts, parts = [], [], []
        for n in range(args.rounds):
            s, b, spent = one_round(drv, x, image_id, n)
            spawns.append(s)
            starts.append(b)
            parts.append(spent)
            print(f"round {n}: spawn->IP {s:.2f} s, VM.start->IP {b:.2f} s", flush=True)
        ms, mb = statistics.median(spawns), statistics.median(starts)
        ratio = ms / mb
        print(f"\nspawn -> IP     median {ms:.2f} s over {args.rounds} rounds")
        print(f"VM.start -> IP  median {mb:.2f} s (baseline)")
        print(
            f"ratio {ratio:.2f}x (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})"
        )
        print("\nwhere spawn's time goes (median seconds):")
        for label in parts[0]:
            print(f"  {label:45s} {statistics.median(p.get(label, 0.0) for p in parts):6.2f}")
        return 0 if ratio <= TARGET else 1
    finally:
        host.stop()
        glance.stop()


if __name__ == "__main__":
    sys.exit(main())
