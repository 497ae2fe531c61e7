"""Helpers for the core benchmarks: wrk runs, a stdlib XML-RPC baseline, bulk fills, RSS.

Run as a script for the parts that must live in their own process:

    python bench/benchlib.py baseline PORT RECORD_XML   # SimpleXMLRPCServer: VM.get_record
    python bench/benchlib.py floor PORT RESPONSE_BODY   # an asyncio server doing no work at all
    python bench/benchlib.py memory VMS                 # fill a toolstack, print RSS in MiB
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from xenstack.core.ids import new_ref, new_uuid
from xenstack.toolstack import Toolstack

GIB = 1 << 30


# ---- filling a database quickly ------------------------------------------------------------


def wait(check: Any, timeout: float = 120.0) -> Any:
    """``check()``'s first true value, polled every 20 ms (TimeoutError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(str(check))


def fill_vms(ts: Toolstack, count: int, *, vbds: int = 3, vdis: int = 3, vifs: int = 2) -> None:
    """Create ``count`` VMs, each with its VDIs, VBDs and VIFs, on one SR and one network."""
    db = ts.db
    sr, net = new_ref(), new_ref()
    with db.transaction():
        db.create("SR", sr, {"uuid": new_uuid(), "name_label": "bench SR", "type": "ext"})
        db.create("network", net, {"uuid": new_uuid(), "name_label": "bench net", "MTU": 1500})
    for start in range(0, count, 500):
        with db.transaction():
            for n in range(start, min(count, start + 500)):
                _one_vm(ts, n, sr, net, vbds, vdis, vifs)


def _one_vm(ts: Toolstack, n: int, sr: str, net: str, vbds: int, vdis: int, vifs: int) -> None:
    db = ts.db
    vm = new_ref()
    db.create("VM", vm, {
        "uuid": new_uuid(), "name_label": f"bench-vm-{n}", "name_description": "a bench VM",
        "memory_static_max": 2 * GIB, "memory_dynamic_max": 2 * GIB,
        "memory_dynamic_min": GIB, "memory_static_min": GIB // 2, "memory_target": 2 * GIB,
        "VCPUs_max": 2, "VCPUs_at_startup": 2, "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd"}, "platform": {"acpi": "1", "apic": "true"},
        "other_config": {"created-by": "bench", "index": str(n)},
    })  # fmt: skip
    disks = []
    for d in range(vdis):
        vdi = new_ref()
        db.create("VDI", vdi, {
            "uuid": new_uuid(), "name_label": f"disk {d} of {n}", "SR": sr,
            "virtual_size": 10 * GIB, "physical_utilisation": GIB, "type": "user",
        })  # fmt: skip
        disks.append(vdi)
    for d in range(vbds):
        db.create("VBD", new_ref(), {
            "uuid": new_uuid(), "VM": vm, "VDI": disks[d] if d < len(disks) else "OpaqueRef:NULL",
            "device": f"xvd{chr(97 + d)}", "userdevice": str(d), "mode": "RW", "type": "Disk",
            "bootable": d == 0,
        })  # fmt: skip
    for d in range(vifs):
        mac = f"02:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}:{d:02x}"
        db.create("VIF", new_ref(), {
            "uuid": new_uuid(), "VM": vm, "network": net, "device": str(d), "MAC": mac,
            "MTU": 1500,
        })  # fmt: skip


# ---- wrk -----------------------------------------------------------------------------------


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" if b < 32 or b in (34, 92) else chr(b) for b in data) + '"'


def lua_post(body: bytes, path: str = "/", content_type: str = "text/xml") -> str:
    return (
        f'wrk.method = "POST"\nwrk.path = "{path}"\nwrk.body = {lua_string(body)}\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
    )


def lua_counter_post(prefix: bytes, suffix: bytes, path: str = "/") -> str:
    """Each request carries a value unique to its wrk thread and sequence number."""
    return f"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
function request()
  n = n + 1
  local body = {lua_string(prefix)} .. id .. "-" .. n .. {lua_string(suffix)}
  return wrk.format("POST", "{path}", {{["Content-Type"] = "text/xml"}}, body)
end
"""


def wrk(
    url: str, script: str, connections: int, threads: int, seconds: float, cpu: int | None = None
) -> dict[str, Any]:
    """Run wrk with a lua script (on CPU ``cpu`` if given); return requests/s, latency figures
    and error counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = [
        *(["taskset", "-c", str(cpu)] if cpu is not None else []),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        f.name,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    Path(f.name).unlink()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return {
        "rps": float(rps.group(1)),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "p50": p50.group(1) if p50 else "?",
        "p99": p99.group(1) if p99 else "?",
    }


# ---- curl ------------------------------------------------------------------------------------


def curl_time(url: str, body: bytes, content_type: str) -> tuple[float, int]:
    """Seconds until the last byte of the response arrived, and the response size."""
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(body)
    fmt = "%{time_total} %{size_download} %{http_code}"
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", fmt, "-H", f"Content-Type: {content_type}",
           "--data-binary", f"@{f.name}", url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    Path(f.name).unlink()
    seconds, size, code = out.split()
    if code != "200":
        raise RuntimeError(f"HTTP {code} from {url}")
    return float(seconds), int(size)


# ---- the baseline server ---------------------------------------------------------------------


class _Handler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # wrk drops its connections at the end of a run


def serve_baseline(port: int, record: dict[str, Any]) -> None:
    server = _ThreadingServer(
        ("127.0.0.1", port), requestHandler=_Handler, allow_none=True, logRequests=False
    )
    records = {"ref": record}

    def get_record(session: str, ref: str) -> dict[str, Any]:
        return {"Status": "Success", "Value": records.get(ref, record)}

    server.register_function(get_record, "VM.get_record")
    server.serve_forever()


def serve_floor(port: int, body: bytes) -> None:
    """The least any asyncio server can do: answer every request with fixed bytes, unparsed.

    It shows the machine's own limit: the rate a server reaches when its work costs nothing.
    """
    import asyncio

    import uvloop

    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n"
        b"Connection: keep-alive\r\n\r\n" % len(body)
    ) + body

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def data_received(self, data: bytes) -> None:
            # wrk sends whole requests and never pipelines: one answer per header block
            self.transport.write(response * data.count(b"\r\n\r\n"))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Floor, "127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(run())


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPUs of every thread of a process (threads it makes later inherit them)."""
    for tid in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(tid.name), cpus)


# ---- memory ----------------------------------------------------------------------------------


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(vms: int) -> dict[str, float]:
    import gc

    ts = Toolstack(None)
    ts.initialise("bench")
    before = rss_mib()
    start = time.perf_counter()
    fill_vms(ts, vms)
    fill_seconds = time.perf_counter() - start
    gc.collect()
    rows = sum(len(t.rows) for t in ts.db.tables.values())
    return {"rss_before": before, "rss_after": rss_mib(), "rows": rows, "fill_s": fill_seconds}


def main(argv: list[str]) -> int:
    if argv[:1] == ["baseline"]:
        (record,), _ = xmlrpc.client.loads(Path(argv[2]).read_text())
        serve_baseline(int(argv[1]), record)
        return 0
    if argv[:1] == ["floor"]:
        serve_floor(int(argv[1]), Path(argv[2]).read_bytes())
        return 0
    if argv[:1] == ["memory"]:
        print(json.dumps(measure_memory(int(argv[1]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
