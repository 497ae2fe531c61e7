"""The host nova-compute drives: its resources for the resource tracker and placement, and
its power and enablement."""

from __future__ import annotations

import datetime
import time
from typing import Any

import os_resource_classes as orc
from nova import exception
from nova.objects import fields as obj_fields
from oslo_serialization import jsonutils

from . import vm_utils
from .session import XenAPISession, failure_code

MiB = vm_utils.MiB
GiB = vm_utils.GiB


def hypervisor_version(software: dict[str, str]) -> int:
    """XAPI's platform version as nova's integer (major*1000000 + minor*1000 + micro)."""
    text = software.get("platform_version") or software.get("product_version") or "0"
    parts = ([int(p) for p in text.split(".") if p.isdigit()] + [0, 0, 0])[:3]
    return parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]


class HostState:
    """Reads one host's record, metrics and SR in few calls."""

    def __init__(self, session: XenAPISession, host: str, sr: str) -> None:
        self.session = session
        self.host = host
        self.sr = sr
        self._cpu_last: float | None = None
        self._cpu_busy_ns = 0
        self._cpu_idle_ns = 0

    def _facts(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.session.call("host.get_record", self.host)
        metrics = self.session.call("host_metrics.get_record", rec["metrics"])
        sr = self.session.call("SR.get_record", self.sr)
        return rec, metrics, sr

    def _vcpus_used(self) -> int:
        """vCPUs of the guests resident on the host (one call, whatever the pool's size)."""
        expr = f'field "resident_on" = "{self.host}" and field "is_control_domain" = "false"'
        used = 0
        for vm_rec in self.session.call("VM.get_all_records_where", expr).values():
            used += int(vm_rec["VCPUs_max"])
        return used

    def available_resource(self) -> dict[str, Any]:
        rec, metrics, sr = self._facts()
        cpu = rec["cpu_info"]
        total = int(metrics["memory_total"])
        free = int(metrics["memory_free"])
        disk_total = int(sr["physical_size"])
        disk_used = int(sr["physical_utilisation"])
        software = rec["software_version"]
        cpu_info = {
            "vendor": cpu.get("vendor", ""),
            "model": cpu.get("modelname", ""),
            "arch": obj_fields.Architecture.X86_64,
            "features": [f for f in cpu.get("flags", "").split() if f],
            "topology": {
                "sockets": int(cpu.get("socket_count", 1) or 1),
                "cores": int(cpu.get("cpu_count", 1)) // int(cpu.get("socket_count", 1) or 1),
                "threads": int(cpu.get("threads_per_core", 1) or 1),
            },
        }
        return {
            "vcpus": int(cpu.get("cpu_count", 0)),
            "memory_mb": total // MiB,
            "local_gb": disk_total // GiB,
            "vcpus_used": self._vcpus_used(),
            "memory_mb_used": (total - free) // MiB,
            "local_gb_used": disk_used // GiB,
            "hypervisor_type": "XenServer",
            "hypervisor_version": hypervisor_version(software),
            "hypervisor_hostname": rec["hostname"],
            "cpu_info": jsonutils.dumps(cpu_info),
            "disk_available_least": (disk_total - disk_used) // GiB,
            "supported_instances": [
                (obj_fields.Architecture.X86_64, obj_fields.HVType.XEN, obj_fields.VMMode.HVM),
            ],
            "numa_topology": None,
        }

    def inventory(self, reserved_mb: int, reserved_gb: int, reserved_cpus: int) -> dict[str, Any]:
        rec, metrics, sr = self._facts()
        vcpus = int(rec["cpu_info"].get("cpu_count", 0))
        mem = int(metrics["memory_total"]) // MiB
        disk = int(sr["physical_size"]) // GiB
        return {
            orc.VCPU: {
                "total": vcpus,
                "min_unit": 1,
                "max_unit": vcpus,
                "step_size": 1,
                "reserved": min(reserved_cpus, vcpus),
            },
            orc.MEMORY_MB: {
                "total": mem,
                "min_unit": 1,
                "max_unit": mem,
                "step_size": 1,
                "reserved": min(reserved_mb, mem),
            },
            orc.DISK_GB: {
                "total": disk,
                "min_unit": 1,
                "max_unit": disk,
                "step_size": 1,
                "reserved": min(reserved_gb, disk),
            },
        }

    def hostname(self) -> str:
        return str(self.session.call("host.get_hostname", self.host))

    def address(self) -> str:
        return str(self.session.call("host.get_address", self.host))

    def uptime(self) -> str:
        """``uptime``'s first words, from the host's boot time as XAPI records it."""
        now = self.session.call("host.get_servertime", self.host)
        now_dt = datetime.datetime.strptime(str(now.value), "%Y%m%dT%H:%M:%SZ")
        other = self.session.call("host.get_other_config", self.host)
        boot = other.get("boot_time") or other.get("agent_start_time")
        if boot is None:
            raise exception.NovaException("the host records no boot time")
        try:
            boot_dt = datetime.datetime.utcfromtimestamp(float(boot))
        except ValueError:
            boot_dt = datetime.datetime.strptime(boot, "%Y%m%dT%H:%M:%SZ")
        up = now_dt - boot_dt
        hours, rest = divmod(int(up.total_seconds()) % 86400, 3600)
        return (
            f" {now_dt:%H:%M:%S} up {up.days} days, {hours:2d}:{rest // 60:02d},"
            " 0 users, load average: 0.00, 0.00, 0.00"
        )

    def set_enabled(self, enabled: bool) -> str:
        self.session.call("host.enable" if enabled else "host.disable", self.host)
        return "enabled" if self.session.call("host.get_enabled", self.host) else "disabled"

    def power_action(self, action: str) -> str:
        """reboot / shutdown (the host disabled first, as XAPI requires; enabled again if
        the host refuses) / startup (of a host that is down: ``host.power_on``)."""
        if action == "startup":
            live = self.session.call(
                "host_metrics.get_live", self.session.call("host.get_metrics", self.host)
            )
            if not live:
                self._unsupported(lambda: self.session.call("host.power_on", self.host))
            return action
        if action not in ("reboot", "shutdown"):
            raise exception.NovaException(f"unknown host power action {action}")
        self.session.call("host.disable", self.host)
        try:
            self._unsupported(lambda: self.session.call(f"host.{action}", self.host))
        except BaseException:
            self.session.call("host.enable", self.host)
            raise
        return action

    @staticmethod
    def _unsupported(fn: Any) -> Any:
        """``fn()``; a host that does not implement the call raises NotImplementedError."""
        try:
            return fn()
        except Exception as exc:
            if failure_code(exc) in ("NOT_IMPLEMENTED", "MESSAGE_METHOD_UNKNOWN"):
                raise NotImplementedError(str(exc)) from exc
            raise

    def cpu_stats(self) -> dict[str, Any]:
        """nova's cumulative CPU times (ns), integrated from XAPI's per-CPU utilisation
        (``host_cpu.utilisation``, the fraction busy over the last interval) between calls.
        XAPI does not split busy time into kernel, user and I/O wait: it is all ``user``."""
        cpus = [
            self.session.call("host_cpu.get_record", ref)
            for ref in self.session.call("host.get_host_CPUs", self.host)
        ]
        now = time.monotonic()
        elapsed = now - self._cpu_last if self._cpu_last is not None else 0.0
        self._cpu_last = now
        for cpu in cpus:
            busy = min(max(float(cpu["utilisation"]), 0.0), 1.0)
            self._cpu_busy_ns += int(busy * elapsed * 1e9)
            self._cpu_idle_ns += int((1.0 - busy) * elapsed * 1e9)
        speed = float(cpus[0]["speed"]) if cpus else 0.0
        return {
            "kernel": 0,
            "idle": self._cpu_idle_ns,
            "user": self._cpu_busy_ns,
            "iowait": 0,
            "frequency": int(speed),
        }
