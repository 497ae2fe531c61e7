"""Host plug-ins: find an executable by name and run it with XAPI's argument protocol.

The plug-in gets one argument, the XML-RPC ``methodCall`` of ``fn(session_ref, args)``, and
answers on stdout with an XML-RPC response (see :mod:`xenstack.plugins.XenAPIPlugin`). Errors
are XAPI's: ``XENAPI_MISSING_PLUGIN [name]`` and ``XENAPI_PLUGIN_FAILURE [status, stdout,
stderr]``; a ``Failure`` answer becomes that XenAPI error as is.

Plug-ins are looked up, in order, in the directories of ``$XENSTACK_PLUGIN_DIR`` (a
``os.pathsep``-separated list), ``<state_dir>/plugins`` and the bundled directory.

Everything is checked before anything runs: a name that cannot be a plain file name (a path,
hidden, longer than ``NAME_MAX`` bytes, or holding a character XML cannot carry) is an unknown
plug-in; a function name longer than ``NAME_MAX`` bytes is an unknown function
(``UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn]``, as the plug-ins' dispatcher answers); a function name
or argument that XML cannot carry, which no argv can hold either, is ``INVALID_VALUE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import xmlrpc.client
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from ..core.config import PLUGIN_TIMEOUT
from ..core.xmltext import storable, visible
from ..errors import ApiError

HERE = Path(__file__).resolve().parent
BUNDLED_DIR = HERE / "bundled"
HELPER_DIR = HERE  # where XenAPIPlugin.py lives, put on the plug-ins' PYTHONPATH
DOM0_BIN = HERE / "dom0bin"  # xenstore-*, vhd-util, xe: first on the plug-ins' PATH
DEFAULT_TIMEOUT = PLUGIN_TIMEOUT
NAME_MAX = 255  # bytes in a file name (Linux); also the longest function name accepted


def plugin_dirs(state_dir: Path | None, extra: Iterable[Path] = ()) -> list[Path]:
    """Where plug-ins are looked for: ``extra`` (the configuration's), the state's
    ``plugins/``, then the bundled ones."""
    dirs = list(extra)
    if state_dir is not None:
        dirs.append(state_dir / "plugins")
    dirs.append(BUNDLED_DIR)
    return dirs


def valid_name(name: str) -> bool:
    """A plain file name: no separators, no ``..``, nothing hidden, not too long."""
    if not name or name.startswith(".") or ".." in name or not storable(name):
        return False
    if len(name.encode()) > NAME_MAX:
        return False
    return not any(sep and sep in name for sep in ("/", "\\", os.sep, os.altsep))


def find(name: str, dirs: Iterable[Path], missing: ApiError) -> Path:
    """The plug-in's path; raise ``missing`` when there is no such plug-in."""
    if not valid_name(name):
        raise missing
    for directory in dirs:
        path = directory / name
        try:
            if path.is_file():
                return path
        except OSError:  # an unreadable directory on the search path: not there
            continue
    raise missing


def check_call(fn: str, args: dict[str, str]) -> None:
    """Refuse a function name or arguments that cannot reach a plug-in intact."""
    if not storable(fn):
        raise ApiError("INVALID_VALUE", ["fn", visible(fn)])
    if len(fn.encode()) > NAME_MAX:
        raise ApiError("UNKNOWN_XENAPI_PLUGIN_FUNCTION", [fn])
    for key, value in args.items():
        for text in (key, value):
            if not storable(text):
                raise ApiError("INVALID_VALUE", ["args", visible(text)])


# What XAPI escapes in a plug-in's argument: markup, both quotes, and the whitespace an XML
# parser would otherwise normalise (a CR, or CR LF, arrives as LF; tabs and newlines are kept
# as references so that the text is exact whatever the parser).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
                          "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})  # fmt: skip


def xml_text(text: str) -> str:
    """``text`` as XML character data that parses back to exactly ``text``."""
    return text.translate(_ESCAPES)


def _string(text: str) -> str:
    return f"<value><string>{xml_text(text)}</string></value>"


def encode_call(fn: str, session_ref: str, args: dict[str, str]) -> str:
    """The ``methodCall`` of ``fn(session_ref, args)`` a plug-in gets as its argument."""
    members = "".join(
        f"<member><name>{xml_text(k)}</name>{_string(v)}</member>" for k, v in args.items()
    )
    return (
        f"<?xml version='1.0'?>\n<methodCall><methodName>{xml_text(fn)}</methodName><params>"
        f"<param>{_string(session_ref)}</param>"
        f"<param><value><struct>{members}</struct></value></param></params></methodCall>\n"
    )


_RESPONSE_END = "</methodResponse>"


def first_response(output: str) -> str:
    """The output up to the end of its first ``methodResponse``: XAPI reads that and ignores
    whatever follows (a second answer, a trace)."""
    end = output.find(_RESPONSE_END)
    return output if end < 0 else output[: end + len(_RESPONSE_END)]


def _failure(*params: object) -> ApiError:
    return ApiError("XENAPI_PLUGIN_FAILURE", params)


def decode_response(output: str) -> str:
    """The result string of a plug-in's answer, or the XenAPI error it carries."""
    try:
        params, _ = xmlrpc.client.loads(first_response(output))
    except xmlrpc.client.Fault as fault:
        raise _failure("fault", fault.faultCode, fault.faultString) from None
    except (ExpatError, ValueError, TypeError, IndexError) as exc:
        raise _failure("failed to parse plugin output", output, str(exc)) from None
    if len(params) != 1:
        raise _failure("unexpected XMLRPC result", output)
    value = params[0]
    if isinstance(value, dict) and "Status" in value:
        return _from_status(value, output)
    if isinstance(value, str):
        return value
    raise _failure("unexpected XMLRPC result", output)


def _from_status(value: dict[str, Any], output: str) -> str:
    if value["Status"] == "Success" and isinstance(value.get("Value"), str):
        return str(value["Value"])
    description = value.get("ErrorDescription")
    if value["Status"] == "Failure" and isinstance(description, list) and description:
        raise ApiError(str(description[0]), [str(p) for p in description[1:]])
    raise _failure("unexpected XMLRPC result", output)


@dataclass
class Outcome:
    """How a plug-in process ended."""

    returncode: int
    stdout: str
    stderr: str

    def check(self) -> None:
        """Raise XAPI's error for a process that did not exit with status 0."""
        if self.returncode > 0:
            raise _failure("non-zero exit", self.stdout, self.stderr)
        if self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            raise _failure(f"signal: {name}", self.stdout, self.stderr)


SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def child_env(url: str, dom0: Mapping[str, str] | None = None) -> dict[str, str]:
    """A plug-in's environment, made from nothing (as XAPI's): the dom0 tools and our Python
    first on ``PATH``, ``XenAPIPlugin`` importable, the toolstack's URL, and ``dom0``'s
    variables (the session for ``xe``, the XenStore socket, the inventory facts)."""
    env = {
        "PATH": os.pathsep.join([str(DOM0_BIN), str(Path(sys.executable).parent), *SYSTEM_PATH]),
        "PYTHONPATH": str(HELPER_DIR),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/"),
        "XENSTACK_URL": url,
    }
    env.update(dom0 or {})
    return env


async def execute(
    path: Path, argv: list[str], env: dict[str, str], timeout: float, stdin: bytes | None = None
) -> Outcome:
    """Run the executable without blocking the event loop; kill its process group on timeout."""
    try:
        proc = await asyncio.create_subprocess_exec(
            str(path),
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise _failure("non-zero exit", "", str(exc)) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise _failure("timeout", "", f"the plug-in did not answer within {timeout:g}s") from None
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def call_plugin(
    dirs: list[Path],
    name: str,
    fn: str,
    session_ref: str,
    args: dict[str, str],
    *,
    url: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    dom0: Mapping[str, str] | None = None,
) -> str:
    """``host.call_plugin``: run plug-in ``name``'s function ``fn``; return its result."""
    path = find(name, dirs, ApiError("XENAPI_MISSING_PLUGIN", [name]))
    check_call(fn, args)
    argv = [encode_call(fn, session_ref, args)]
    outcome = await execute(path, argv, child_env(url, dom0), timeout)
    outcome.check()
    return decode_response(outcome.stdout)
