"""``xenstack doctor network`` and ``xe network-doctor``: each VIF of a VM checked on the
switch against what the database says (:mod:`xenstack.net.doctor` does the checks).

The server answers ``GET /network_doctor?vm=NAME[&vif=UUID]`` with the JSON report (its
permission is declared in ``api/rbac.py``); ``xenstack doctor network --state-dir DIR`` runs
the same checks from the state directory beside a running server.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ...db.store import Database
from ...errors import ApiError
from ...net import doctor as checks
from ...net.model import vif_name
from .ports import bridge_specs, effective_locking, external_ids, local_pif, switch

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)


def _vms_named(db: Database, name: str) -> list[str]:
    found = [
        r
        for r, row in db.table("VM").rows.items()
        if (row["name_label"] == name or row["uuid"] == name) and not row["is_a_template"]
    ]
    if not found:
        raise ApiError("UUID_INVALID", ["VM", name])
    return found


def expectations(services: Services, vm_name: str, vif_uuid: str = "") -> list[checks.Expected]:
    db = services.db
    wanted = []
    for vm_ref in _vms_named(db, vm_name):
        vm = db.get("VM", vm_ref)
        for vif_ref in vm["VIFs"]:
            vif = db.get("VIF", vif_ref)
            if vif_uuid and vif["uuid"] != vif_uuid:
                continue
            wanted.append(_expected(services, vm, vif))
    return wanted


def _expected(services: Services, vm: dict[str, Any], vif: dict[str, Any]) -> checks.Expected:
    db = services.db
    net = db.get("network", vif["network"])
    host = vm["resident_on"] if db.exists("host", vm["resident_on"]) else services.this_host
    specs = bridge_specs(db, host, vif["network"])
    own, root = specs[-1], specs[0]
    root_pif = local_pif(db, host, _network_of_bridge(db, root.name) or vif["network"])
    device = root_pif["device"] if root_pif is not None and root_pif["physical"] else ""
    service = getattr(services, "network", None)
    dhcp = service.dhcp_facts(vif["network"]) if service is not None else None
    return checks.Expected(
        vif_uuid=vif["uuid"],
        vm=vm["name_label"],
        device=vif["device"],
        port=vif_name(max(vm["domid"], 0), vif["device"]),
        bridge=own.name,
        parent=root.name,
        tag=own.tag,
        mac=vif["MAC"],
        mtu=int(net["MTU"]),
        external_ids=external_ids(db, vif),
        locking=effective_locking(db, vif),
        network=net["name_label"] or net["bridge"],
        pif=device,
        dhcp=dhcp,
    )


def _network_of_bridge(db: Database, bridge: str) -> str:
    for ref, row in db.table("network").rows.items():
        if row["bridge"] == bridge:
            return str(ref)
    return ""


async def run(
    services: Services, vm_name: str, vif_uuid: str = "", interval: float = 1.0
) -> list[checks.Report]:
    reports = []
    sw = switch(services)
    for expected in expectations(services, vm_name, vif_uuid):
        vm_power = [
            r["power_state"]
            for r in services.db.table("VM").rows.values()
            if r["name_label"] == expected.vm
        ]
        if vm_power and "Running" not in vm_power and "Paused" not in vm_power:
            report = checks.Report(f"VIF {expected.device} of VM {expected.vm}")
            report.add(
                checks.ERROR,
                "vm",
                f"VM {expected.vm} is not running: its VIFs have no ports",
                f"xe vm-start vm={expected.vm}",
            )
            reports.append(report)
            continue
        reports.append(await checks.diagnose(sw, expected, interval=interval))
    return reports


def as_json(reports: list[checks.Report]) -> bytes:
    return orjson.dumps(
        {
            "healthy": all(r.healthy for r in reports),
            "reports": [
                {
                    "subject": r.subject,
                    "healthy": r.healthy,
                    "findings": [f.as_dict() for f in r.findings],
                }
                for r in reports
            ],
        }
    )


def doctor_routes(services: Services) -> list[tuple[str, str, Any]]:
    """``GET /network_doctor``: the report as JSON (200 healthy, 409 problems found)."""

    async def network_doctor(request: web.Request) -> web.StreamResponse:
        vm = request.query.get("vm", "")
        try:
            interval = min(max(float(request.query.get("interval", "1")), 0.0), 10.0)
            reports = await run(services, vm, request.query.get("vif", ""), interval)
        except ApiError as err:
            return web.Response(
                status=404,
                body=orjson.dumps({"error": err.code, "params": err.params}),
                content_type="application/json",
            )
        except ValueError:
            return web.Response(status=400, text="bad interval")
        status = 200 if all(r.healthy for r in reports) else 409
        return web.Response(status=status, body=as_json(reports), content_type="application/json")

    return [("GET", "/network_doctor", network_doctor)]
