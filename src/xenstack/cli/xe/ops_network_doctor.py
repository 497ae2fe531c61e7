"""``xe network-doctor vm=<name> [vif-uuid=<uuid>] [--json]``: the network doctor's report.

The server checks each VIF of the VM on its switch (``GET /network_doctor``); the command
prints the findings, each wrong one with the command that fixes it, and fails (exit status 1)
when one is an error. ``--json`` prints the report as the server gives it, for tools.
"""

from __future__ import annotations

import json
import sys

from .context import Ctx
from .ops_vdi_transfer import _connection
from .output import CliError
from .registry import command

MARKS = {"error": "FAIL", "warning": "WARN", "ok": " ok "}


@command(
    "network-doctor",
    reqd="vm",
    optn="vif-uuid json interval",
    help="Check a VM's network interfaces on the host's switch and say how to fix them.",
)
def network_doctor(ctx: Ctx) -> None:
    from urllib.parse import urlencode

    query = {"session_id": ctx.client.session, "vm": ctx.req("vm")}
    if ctx.get("vif-uuid"):
        query["vif"] = ctx.req("vif-uuid")
    if ctx.get("interval"):
        query["interval"] = ctx.req("interval")
    conn = _connection(ctx)
    conn.request("GET", f"/network_doctor?{urlencode(query)}")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status not in (200, 409):
        try:
            error = json.loads(body)
            detail = f"{error['error']} {' '.join(map(str, error['params']))}"
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {response.status}"
        raise CliError(f"The network doctor could not run: {detail}")
    report = json.loads(body)
    if ctx.flag("json"):
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        for item in report["reports"]:
            state = "healthy" if item["healthy"] else "PROBLEMS FOUND"
            lines = [f"{item['subject']}: {state}"]
            for f in item["findings"]:
                lines.append(
                    f"  [{MARKS.get(f['severity'], f['severity'])}] {f['check']}: {f['message']}"
                )
                if f["fix"] and f["severity"] != "ok":
                    lines.append(f"         fix: {f['fix']}")
            ctx.printer.lines(lines)
    if not report["healthy"]:
        raise CliError("the network doctor found problems")
