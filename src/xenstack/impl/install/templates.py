"""The default VM templates of a fresh XenServer 8 install.

Each template is a halted VM with ``is_a_template`` and ``is_default_template`` set, carrying
what clients read from XenServer's templates: ``other_config["disks"]`` (the provisioning spec
VM.provision turns into VDIs), ``install-methods``, ``linux_template``/``default_template``,
boot policy and parameters, platform flags, memory and vCPU defaults, recommendations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.ids import new_ref, new_uuid, now
from ...core.objects import new_record
from ...db.store import Database

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Template:
    name: str
    reference_label: str
    family: str  # "linux" or "windows" or "other"
    memory_min: int
    memory_max: int
    disk_size: int
    vcpus_max: int = 32
    install_methods: str = "cdrom,nfs,http,ftp"
    description: str = ""
    uefi: bool = False
    secureboot: bool = False
    distro: str = ""


TEMPLATES = (
    Template(
        "Debian Bookworm 12",
        "debian-12",
        "linux",
        512 * MiB,
        256 * GiB,
        10 * GiB,
        distro="debianlike",
    ),
    Template(
        "Debian Bullseye 11",
        "debian-11",
        "linux",
        512 * MiB,
        256 * GiB,
        10 * GiB,
        distro="debianlike",
    ),
    Template(
        "Ubuntu Jammy Jellyfish 22.04",
        "ubuntu-22.04",
        "linux",
        1 * GiB,
        256 * GiB,
        10 * GiB,
        install_methods="cdrom,nfs,http,ftp",
        distro="debianlike",
    ),
    Template(
        "Ubuntu Noble Numbat 24.04",
        "ubuntu-24.04",
        "linux",
        1 * GiB,
        256 * GiB,
        10 * GiB,
        distro="debianlike",
    ),
    Template(
        "CentOS Stream 9", "centos-stream-9", "linux", 2 * GiB, 256 * GiB, 10 * GiB, distro="rhlike"
    ),
    Template(
        "Rocky Linux 8", "rockylinux-8", "linux", 2 * GiB, 256 * GiB, 10 * GiB, distro="rhlike"
    ),
    Template(
        "Rocky Linux 9", "rockylinux-9", "linux", 2 * GiB, 256 * GiB, 10 * GiB, distro="rhlike"
    ),
    Template(
        "Windows 10 (64-bit)",
        "windows-10",
        "windows",
        2 * GiB,
        1024 * GiB,
        32 * GiB,
        install_methods="cdrom",
        uefi=True,
        secureboot=True,
    ),
    Template(
        "Windows Server 2022 (64-bit)",
        "windows-server-2022",
        "windows",
        2 * GiB,
        1536 * GiB,
        32 * GiB,
        install_methods="cdrom",
        uefi=True,
        secureboot=True,
    ),
    Template(
        "xenstack test guest",
        "xenstack-test-guest",
        "linux",
        128 * MiB,
        1 * GiB,
        64 * MiB,
        vcpus_max=4,
        install_methods="",
        description="The small Linux guest tools/test-guest/build.sh makes from Debian packages",
        distro="xsg",
    ),
    Template(
        "Other install media",
        "other-install-media",
        "other",
        128 * MiB,
        1024 * GiB,
        8 * GiB,
        install_methods="cdrom",
    ),
)


def provision_spec(size: int) -> str:
    """XAPI's ``other_config["disks"]`` XML: one bootable system disk on the default SR."""
    return (
        f'<provision><disk device="0" size="{size}" sr="" bootable="true" '
        f'type="system"/></provision>'
    )


def recommendations(t: Template) -> str:
    limits = [
        ("memory-static-max", t.memory_max),
        ("vcpus-max", t.vcpus_max),
        ("has-vendor-device", "true" if t.family == "windows" else "false"),
        ("allow-gpu-passthrough", "1"),
        ("allow-vgpu", "1"),
        ("allow-network-sriov", "1"),
    ]
    body = "".join(f'<restriction field="{k}" max="{v}"/>' for k, v in limits[:2])
    body += "".join(f'<restriction field="{k}" value="{v}"/>' for k, v in limits[2:])
    body += '<restriction property="number-of-vbds" max="255"/>'
    body += '<restriction property="number-of-vifs" max="7"/>'
    return f"<restrictions>{body}</restrictions>"


def _platform(t: Template) -> dict[str, str]:
    platform = {
        "device-model": "qemu-upstream-" + ("uefi" if t.uefi else "compat"),
        "nx": "true",
        "acpi": "1",
        "apic": "true",
        "pae": "true",
        "hpet": "true",
        "viridian": "true" if t.family == "windows" else "false",
    }
    if t.uefi:
        platform["secureboot"] = "auto" if t.secureboot else "false"
    if t.family == "windows":
        platform.update(viridian_time_ref_count="true", viridian_reference_tsc="true")
    return platform


def _other_config(t: Template) -> dict[str, str]:
    config = {
        "default_template": "true",
        "disks": provision_spec(t.disk_size),
        "install-methods": t.install_methods,
        "base_template_name": t.name,
        "instant": "true" if t.family == "other" else "false",
    }
    if t.family == "linux":
        config.update(linux_template="true", install_distro=t.distro)
    return config


def template_record(t: Template, metrics: str) -> dict[str, Any]:
    default_memory = max(t.memory_min, 2 * GiB if t.family == "windows" else t.memory_min)
    return new_record(
        "VM",
        uuid=new_uuid(),
        name_label=t.name,
        name_description=t.description or f"Template which allows VM installation of {t.name}",
        is_a_template=True,
        is_default_template=True,
        power_state="Halted",
        user_version=1,
        reference_label=t.reference_label,
        domain_type="hvm",
        HVM_boot_policy="BIOS order",
        HVM_boot_params={"order": "dc", "firmware": "uefi" if t.uefi else "bios"},
        HVM_shadow_multiplier=1.0,
        platform=_platform(t),
        memory_static_min=t.memory_min,
        memory_dynamic_min=default_memory,
        memory_dynamic_max=default_memory,
        memory_static_max=default_memory,
        memory_target=default_memory,
        VCPUs_max=2 if t.family == "windows" else 1,
        VCPUs_at_startup=2 if t.family == "windows" else 1,
        actions_after_shutdown="destroy",
        actions_after_reboot="restart",
        actions_after_crash="restart",
        recommendations=recommendations(t),
        other_config=_other_config(t),
        has_vendor_device=t.family == "windows",
        metrics=metrics,
        allowed_operations=["clone", "copy", "export", "provision", "destroy"],
        hardware_platform_version=0,
    )


TEST_GUEST_DIR = "/var/cache/xenstack-test-guest/current"  # tools/test-guest/build.sh


def test_guest(record: dict[str, Any]) -> dict[str, Any]:
    """The test guest boots its kernel directly (PV-style), from the build script's cache,
    with a 128 MiB static maximum and its agent on the console's side channel."""
    record.update(
        domain_type="pv",
        HVM_boot_policy="",
        HVM_boot_params={},
        PV_kernel=f"{TEST_GUEST_DIR}/vmlinux",
        PV_ramdisk=f"{TEST_GUEST_DIR}/initrd.img",
        PV_args="console=ttyS0 panic=-1 quiet",
        memory_static_max=128 * MiB,
        memory_dynamic_max=128 * MiB,
        memory_dynamic_min=128 * MiB,
        memory_target=128 * MiB,
    )
    record["other_config"]["disks"] = (
        f'<provision><disk device="0" size="{64 * MiB}" sr="" bootable="false" '
        f'type="user"/></provision>'
    )
    return record


def create_templates(db: Database) -> list[str]:
    """The default templates, each with its VM_metrics; return their refs."""
    refs = []
    for t in TEMPLATES:
        metrics, ref = new_ref(), new_ref()
        db.create("VM_metrics", metrics, {"uuid": new_uuid(), "last_updated": now()})
        record = template_record(t, metrics)
        db.create(
            "VM", ref, test_guest(record) if t.reference_label == "xenstack-test-guest" else record
        )
        refs.append(ref)
    return refs
