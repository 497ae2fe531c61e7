"""The pure parts of the QEMU backend: the argv a spec gives, and the guest metrics an
agent's keys amount to (xapi_guest_agent's rules)."""

from __future__ import annotations

from xenstack.xenops.interface import BootSpec, DiskSpec, DomainSpec, NicSpec
from xenstack.xenops.qemu.agent import GuestChannel
from xenstack.xenops.qemu.cmdline import RunDir, argv, boot_indexes

MIB = 1 << 20


def spec(**kw: object) -> DomainSpec:
    base = DomainSpec("vm", "guest", "hvm", 256 * MIB, 128 * MIB, 192 * MIB, 0, 2, 1,
                      uuid="00000000-0000-4000-8000-000000000001")  # fmt: skip
    return DomainSpec(**{**{f: getattr(base, f) for f in base.__slots__}, **kw})  # type: ignore[arg-type]


def test_disks_come_over_nbd_with_reconnect_and_cds_from_files() -> None:
    disks = (
        DiskSpec("0", "v0", "Disk", "RW", nbd_socket="/s/v0.sock", export="/v0?attach=t"),
        DiskSpec("3", "v3", "CD", "RO", path="/isos/a,b.iso"),
        DiskSpec("1", "", "CD", "RO", empty=True),
    )
    args = argv(spec(disks=disks), RunDir("/r"), 7)
    joined = " ".join(args)
    assert ("driver=nbd,node-name=vbd0,server.type=unix,server.path=/s/v0.sock,"
            "export=/v0?attach=t,reconnect-delay=30,read-only=off") in joined  # fmt: skip
    assert "filename=/isos/a,,b.iso" in joined  # commas escaped as QEMU wants
    assert "ide-cd,id=vbd-1,bus=ide.0,unit=1" in joined  # empty drive: no medium
    assert args[args.index("-m") + 1] == "256" and args[args.index("-smp") + 1] == "1,maxcpus=2"
    assert "-daemonize" in args and "reboot=shutdown,shutdown=poweroff,panic=shutdown" in args


def test_nics_are_taps_named_as_xenserver_names_them() -> None:
    nic = NicSpec("2", "vif", "aa:bb:cc:00:11:22", "net", "xenbr0", 9000)
    joined = " ".join(argv(spec(nics=(nic,)), RunDir("/r"), 5))
    assert "tap,id=net2,ifname=vif5.2,script=no,downscript=no" in joined
    assert "virtio-net-pci,id=vif-2,netdev=net2,mac=aa:bb:cc:00:11:22,host_mtu=9000" in joined


def test_boot_order_and_direct_kernel_boot() -> None:
    disks = (DiskSpec("0", "a", "Disk"), DiskSpec("3", "c", "CD", "RO", path="/x.iso"))
    nics = (NicSpec("0", mac="aa:00:00:00:00:01"),)
    order = boot_indexes(spec(disks=disks, nics=nics, boot=BootSpec(order="dnc")))
    assert order == {"vbd-3": 1, "vif-0": 2, "vbd-0": 3}
    kernel = argv(spec(boot=BootSpec(kernel="/k", ramdisk="/i", kernel_args="console=ttyS0")),
                  RunDir("/r"), 1)  # fmt: skip
    assert kernel[kernel.index("-kernel") + 1] == "/k" and "-append" in kernel
    uefi = " ".join(argv(spec(boot=BootSpec(firmware="uefi")), RunDir("/r"), 1))
    assert "OVMF_CODE_4M.fd" in uefi and "file=/r/OVMF_VARS.fd" in uefi


def test_agent_keys_reach_xenstore_with_the_vifs_device() -> None:
    """The channel hands every key on as the guest wrote it, except that the guest's
    interface number becomes the VIF's device (by the MAC the agent reports beside it); guest
    metrics are then derived from XenStore, one path for both backends."""
    seen: list[tuple[str, str | None]] = []
    channel = GuestChannel("vm", 4, "/nonexistent", {"aa:00:00:00:00:02": "3"},
                           lambda key, value: seen.append((key, value)))  # fmt: skip
    channel._apply(
        [
            "data/os_distro=xsg",
            "attr/vif/0/mac=AA:00:00:00:00:02",  # eth0 is the VIF of device 3
            "attr/vif/0/ipv4/0=10.0.0.5",
            "bad line without a value",
            "control/feature-shutdown=1",
            "data/os_distro=xsg",  # unchanged: not said again
            "control/feature-shutdown=",  # removed
        ]
    )
    assert seen == [
        ("data/os_distro", "xsg"),
        ("attr/vif/3/mac", "AA:00:00:00:00:02"),
        ("attr/vif/3/ipv4/0", "10.0.0.5"),
        ("control/feature-shutdown", "1"),
        ("control/feature-shutdown", None),
    ]
