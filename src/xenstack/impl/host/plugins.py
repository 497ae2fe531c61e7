"""``host.call_plugin`` and ``host.call_extension``: executables next to the toolstack.

The plug-in search path and the protocol live in :mod:`xenstack.plugins.runner`; this module
binds them to the toolstack (its state directory, its URL for call-backs, and the timeout and
extra directories of its configuration).
"""

from __future__ import annotations

import json
import os
import xmlrpc.client
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...plugins import runner
from ..registry import implements


def _timeout(ctx: Context) -> float:
    return ctx.toolstack.config.plugin_timeout


def toolstack_url(ctx: Context) -> str:
    """Where a plug-in reaches this toolstack's XenAPI ("" when not serving HTTP)."""
    server = ctx.toolstack.server
    if server is None or "http" not in server.ports:
        return ""
    host = server.config.listen
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"http://{host}:{server.ports['http']}/"


def inventory(db: Database, host: str) -> dict[str, str]:
    """``/etc/xensource-inventory``'s facts about ``host``."""
    row = db.get("host", host)
    dom0 = [
        r
        for r in row["resident_VMs"]
        if db.exists("VM", r) and db.get("VM", r)["is_control_domain"]
    ]
    bridge = ""
    for pif in row["PIFs"]:
        if db.exists("PIF", pif) and db.get("PIF", pif)["management"]:
            bridge = db.get("network", db.get("PIF", pif)["network"])["bridge"]
    version = row["software_version"]
    return {
        "INSTALLATION_UUID": row["uuid"],
        "CONTROL_DOMAIN_UUID": db.get("VM", dom0[0])["uuid"] if dom0 else "",
        "MANAGEMENT_INTERFACE": bridge,
        "MANAGEMENT_ADDRESS_TYPE": "IPv4",
        "PRODUCT_BRAND": version.get("product_brand", "xenstack"),
        "PRODUCT_VERSION": version.get("product_version", ""),
        "BUILD_NUMBER": version.get("build_number", ""),
    }


def write_inventory(state_dir: Path, facts: dict[str, str]) -> Path:
    """The inventory as ``KEY='value'`` lines in ``STATE_DIR/xensource-inventory`` (0600)."""
    path = state_dir / "xensource-inventory"
    text = "".join(f"{k}='{v}'\n" for k, v in facts.items())
    if not path.exists() or path.read_text() != text:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return path


def dom0_env(ctx: Context, host: str) -> dict[str, str]:
    """What a plug-in (and ``xenstack shell``) finds in its environment besides ``PATH``: the
    inventory facts, ``xe``'s way back to this toolstack with the calling session, and
    dom0's XenStore socket."""
    facts = inventory(ctx.db, host)
    env = {**dict(ctx.toolstack.config.plugin_env), **facts}
    url = toolstack_url(ctx)
    if url:
        hostport = url.split("//", 1)[1].rstrip("/")
        server, _, port = hostport.rpartition(":")
        env["XE_EXTRA_ARGS"] = f"server={server},port={port}"
    server = ctx.toolstack.server
    socket_path = getattr(getattr(server, "config", None), "socket_path", None)
    if socket_path is not None:
        env["XENSTACK_SOCKET"] = str(socket_path)
    if ctx.session:
        env["XENSTACK_SESSION"] = ctx.session
    if ctx.toolstack.config.netns:  # dom0's network is this namespace, not the machine's
        env["XENSTACK_NETNS"] = ctx.toolstack.config.netns
    state = ctx.toolstack.state_dir
    if state is not None:
        env["XENSTACK_STATE_DIR"] = str(state)
        env["XENSTACK_INVENTORY"] = str(write_inventory(state, facts))
        env["XENSTORED_PATH"] = str(state / "run" / "xenstored" / "socket")
    return env


@implements("host.call_plugin")
async def call_plugin(ctx: Context, host: str, plugin: str, fn: str, args: dict[str, str]) -> str:
    ctx.db.get("host", host)
    dirs = runner.plugin_dirs(ctx.toolstack.state_dir, ctx.toolstack.config.plugin_dirs)
    return await runner.call_plugin(
        dirs,
        plugin,
        fn,
        ctx.session,
        args,
        url=toolstack_url(ctx),
        timeout=_timeout(ctx),
        dom0=dom0_env(ctx, host),
    )


def extension_dirs(ctx: Context) -> list[Path]:
    dirs = list(ctx.toolstack.config.extension_dirs)
    if ctx.toolstack.state_dir is not None:
        dirs.append(ctx.toolstack.state_dir / "extensions")
    return dirs


@implements("host.has_extension")
def has_extension(ctx: Context, host: str, name: str) -> bool:
    ctx.db.get("host", host)
    if not runner.valid_name(name):
        return False
    return any((d / name).is_file() for d in extension_dirs(ctx))


def _parse_call(call: str) -> tuple[str, list[Any]]:
    try:
        decoded = json.loads(call)
        method, params = decoded["method"], decoded.get("params", [])
    except (ValueError, KeyError, TypeError):
        raise ApiError("INTERNAL_ERROR", ["call_extension: not a JSON-RPC call"]) from None
    if not isinstance(method, str) or not isinstance(params, list):
        raise ApiError("INTERNAL_ERROR", ["call_extension: not a JSON-RPC call"])
    return method, params


@implements("host.call_extension")
async def call_extension(ctx: Context, host: str, call: str) -> str:
    """Run extension ``method`` with the XML-RPC call on stdin; answer its result."""
    ctx.db.get("host", host)
    method, params = _parse_call(call)
    path = runner.find(method, extension_dirs(ctx), ApiError("MESSAGE_METHOD_UNKNOWN", [method]))
    request = xmlrpc.client.dumps(tuple(params), methodname=method, allow_none=True)
    outcome = await runner.execute(
        path,
        ["--xmlrpc"],
        runner.child_env(toolstack_url(ctx), dom0_env(ctx, host)),
        _timeout(ctx),
        request.encode(),
    )
    if outcome.returncode != 0:
        # xapi: ocaml/xapi/xapi_extensions.ml passes 4
        raise ApiError("INTERNAL_ERROR", [path, "non-zero exit", outcome.stdout, outcome.stderr])
    try:
        (value,), _ = xmlrpc.client.loads(outcome.stdout)
    except (ExpatError, ValueError, xmlrpc.client.Fault) as exc:
        # xapi: ocaml/xapi/xapi_extensions.ml passes 4
        raise ApiError(
            "INTERNAL_ERROR", [path, "failed to parse extension output", outcome.stdout, exc]
        ) from None
    if isinstance(value, dict) and value.get("Status") == "Failure":
        description = [str(x) for x in value.get("ErrorDescription", [])]
        if not description:
            # xapi: ocaml/xapi/xapi_host.ml passes 1
            raise ApiError("EXTENSION_PROTOCOL_FAILURE", [json.dumps(value)])
        raise ApiError(description[0], description[1:])
    result = value.get("Value", "") if isinstance(value, dict) else value
    return result if isinstance(result, str) else json.dumps(result)
