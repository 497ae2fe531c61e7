"""What the driver reads about an instance without changing it: its disks, block stats,
console log and VNC console, diagnostics."""

from __future__ import annotations

import base64
import urllib.parse
import zlib
from typing import Any

from nova import exception, objects
from nova.console import type as ctype
from nova.objects import diagnostics as diag_obj
from oslo_config import cfg
from oslo_serialization import jsonutils
from oslo_utils import timeutils

from . import vm_utils
from .session import XenAPISession, failure_code
from .vmops import VMOps

CONF = cfg.CONF


class Inspector:
    def __init__(self, session: XenAPISession, host: str, vmops: VMOps) -> None:
        self.session = session
        self.host = host
        self.vmops = vmops

    def get_instance_disk_info(self, instance: Any, block_device_info: Any = None) -> str:
        vm = self.vmops.vm(instance)
        disks = []
        for vbd, _vdi, rec in vm_utils.vm_disks(self.session, vm):
            disks.append(
                {
                    "type": "vhd",
                    "path": rec["uuid"],
                    "device": self.session.call("VBD.get_userdevice", vbd),
                    "virt_disk_size": int(rec["virtual_size"]),
                    "disk_size": int(rec["physical_utilisation"]),
                    "backing_file": rec["sm_config"].get("vhd-parent", ""),
                    "over_committed_disk_size": 0,
                }
            )
        return str(jsonutils.dumps(disks))

    def block_stats(self, instance: Any, disk_id: str) -> list[Any]:
        """[rd_req, rd_bytes, wr_req, wr_bytes, errs] of the disk; XAPI keeps byte rates
        per VBD (``VBD_metrics``), not request counts, so those are None."""
        session = self.session
        vm = self.vmops.vm(instance)
        for vbd in session.call("VM.get_VBDs", vm):
            rec = session.call("VBD.get_record", vbd)
            if disk_id not in (rec["device"], rec["userdevice"], rec["uuid"]):
                continue
            read = write = 0
            with vm_utils.ignore("HANDLE_INVALID"):
                if rec["metrics"] != "OpaqueRef:NULL":
                    m = session.call("VBD_metrics.get_record", rec["metrics"])
                    read, write = (
                        int(float(m["io_read_kbs"]) * 1024),
                        int(float(m["io_write_kbs"]) * 1024),
                    )
            return [None, read, None, write, None]
        return [None, None, None, None, None]

    # --- consoles and diagnostics

    def get_console_output(self, context: Any, instance: Any) -> str:
        """The guest's console log, through the host's ``console.py`` plug-in (as XenServer's
        dom0 keeps it); a host without one has none to give."""
        session = self.session
        vm = self.vmops.vm(instance)
        domid = session.call("VM.get_domid", vm)
        try:
            out = session.call_plugin(
                self.host, "console.py", "get_console_log", {"dom_id": str(domid)}
            )
        except Exception as exc:
            if failure_code(exc) in ("XENAPI_MISSING_PLUGIN", "UNKNOWN_XENAPI_PLUGIN_FUNCTION"):
                raise exception.ConsoleNotAvailable() from exc
            raise
        return zlib.decompress(base64.b64decode(out)).decode("utf-8", "replace")

    def get_vnc_console(self, context: Any, instance: Any) -> Any:
        session = self.session
        vm = self.vmops.vm(instance)
        for ref in session.call("VM.get_consoles", vm):
            rec = session.call("console.get_record", ref)
            if rec["protocol"] != "rfb":
                continue
            loc = urllib.parse.urlsplit(rec["location"])
            path = f"{loc.path}?{loc.query}" if loc.query else loc.path
            port = loc.port or (443 if loc.scheme == "https" else 80)
            return ctype.ConsoleVNC(
                host=CONF.vnc.server_proxyclient_address,
                port=port,
                internal_access_path=path,
            )
        raise exception.ConsoleTypeUnavailable(console_type="vnc")

    def get_serial_console(self, context: Any, instance: Any) -> Any:
        host, port = self.vmops.serial_console(instance)
        return ctype.ConsoleSerial(host=host, port=port)

    def get_spice_console(self, context: Any, instance: Any) -> Any:
        raise NotImplementedError()  # XenServer offers RFB (VNC) consoles only

    def get_mks_console(self, context: Any, instance: Any) -> Any:
        raise NotImplementedError()  # a VMware protocol

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """The VM's record as the old driver gave it: metrics and guest metrics flattened."""
        session = self.session
        vm = self.vmops.vm(instance)
        rec = session.call("VM.get_record", vm)
        out: dict[str, Any] = {"power_state": rec["power_state"], "domid": rec["domid"]}
        with vm_utils.ignore("HANDLE_INVALID"):
            metrics = session.call("VM_metrics.get_record", rec["metrics"])
            out["memory_actual"] = metrics["memory_actual"]
            for cpu, used in metrics["VCPUs_utilisation"].items():
                out[f"cpu{cpu}"] = used
        return out

    def get_instance_diagnostics(self, instance: Any) -> Any:
        session = self.session
        vm = self.vmops.vm(instance)
        rec = session.call("VM.get_record", vm)
        state = vm_utils.POWER_STATES.get(rec["power_state"], 0)
        diags = diag_obj.Diagnostics(
            state=state,
            driver="xenapi",
            hypervisor="xen",
            hypervisor_os="linux",
            config_drive=bool(instance.config_drive),
        )
        with vm_utils.ignore("HANDLE_INVALID"):
            metrics = session.call("VM_metrics.get_record", rec["metrics"])
            start = metrics.get("start_time")
            if start and rec["power_state"] == "Running":
                started = timeutils.parse_isotime(str(start.value)[:8] + str(start.value)[8:])
                diags.uptime = int((timeutils.utcnow(True) - started).total_seconds())
            for cpu, used in sorted(metrics["VCPUs_utilisation"].items()):
                diags.add_cpu(id=int(cpu), utilisation=int(float(used) * 100))
            diags.memory_details = objects.MemoryDiagnostics(
                maximum=int(rec["memory_static_max"]) // vm_utils.MiB,
                used=int(metrics["memory_actual"]) // vm_utils.MiB,
            )
        for vif in session.call("VM.get_VIFs", vm):
            diags.add_nic(mac_address=session.call("VIF.get_MAC", vif))
        for _vbd, _vdi, _vrec in vm_utils.vm_disks(session, vm):
            diags.add_disk()
        diags.num_cpus = len(diags.cpu_details)
        diags.num_nics = len(diags.nic_details)
        diags.num_disks = len(diags.disk_details)
        return diags
