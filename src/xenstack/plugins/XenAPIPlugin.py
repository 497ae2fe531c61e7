"""The helper host plug-ins import as ``XenAPIPlugin`` (XenServer's plug-in protocol).

A plug-in is an executable started with one argument: an XML-RPC ``methodCall`` of
``fn(session_ref, args)``. It answers on stdout with an XML-RPC response whose single value is
``{"Status": "Success", "Value": <string>}`` or ``{"Status": "Failure", "ErrorDescription":
[code, *params]}``. A plug-in written for XenServer runs unchanged::

    import XenAPIPlugin

    def echo(session, args):
        return args.get("text", "")

    if __name__ == "__main__":
        XenAPIPlugin.dispatch({"echo": echo})

The first argument of each function is a XenAPI session logged in with the caller's session
(when the ``XenAPI`` package is importable), else a bare object with ``_session``. It is made
when the function first uses it: a plug-in starts in a few tens of milliseconds, most of it
the interpreter's own start, so this module reads and writes XML-RPC with ``pyexpat``
instead of importing ``xmlrpc.client`` (and ``http.client``, ``email``, ``ssl`` with it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any
from xml.parsers import expat

Handler = Callable[[Any, dict[str, str]], Any]


class Failure(Exception):
    """Raised by a plug-in function to answer with a XenAPI error ``[code, *params]``."""

    def __init__(self, code: str, params: list[str]) -> None:
        super().__init__(code, params)
        self.params = [code, *params]

    def __str__(self) -> str:
        return str(self.params)


class PluginError(Exception):
    """A plug-in's own error: answered as XENAPI_PLUGIN_FAILURE [fn, "PluginError", message]."""


# ---- XML-RPC, the part plug-ins use ----------------------------------------------------

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _value(value: Any) -> str:
    if value is None:
        return "<value><nil/></value>"
    if isinstance(value, bool):
        return f"<value><boolean>{int(value)}</boolean></value>"
    if isinstance(value, int):
        return f"<value><int>{value}</int></value>"
    if isinstance(value, float):
        return f"<value><double>{value!r}</double></value>"
    if isinstance(value, Mapping):
        members = "".join(
            f"<member><name>{str(k).translate(_ESCAPES)}</name>{_value(v)}</member>"
            for k, v in value.items()
        )
        return f"<value><struct>{members}</struct></value>"
    if isinstance(value, (list, tuple)):
        return f"<value><array><data>{''.join(_value(v) for v in value)}</data></array></value>"
    return f"<value><string>{str(value).translate(_ESCAPES)}</string></value>"


def _response(value: Any) -> str:
    return (
        "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
        f"{_value(value)}\n</param>\n</params>\n</methodResponse>\n"
    )


def success_message(result: Any) -> str:
    return _response({"Status": "Success", "Value": result})


def failure_message(description: list[str]) -> str:
    return _response({"Status": "Failure", "ErrorDescription": description})


_SCALARS: dict[str, Callable[[str], Any]] = {
    "string": str, "int": int, "i4": int, "i8": int, "double": float,
    "boolean": lambda t: t.strip() == "1", "dateTime.iso8601": str, "base64": str,
}  # fmt: skip


class _Parser:
    """A ``methodCall`` to (method name, parameters), with expat's callbacks."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.containers: list[list[Any]] = []  # open arrays and structs: [kind, items, name]
        self.values: list[bool] = []  # per open <value>: has it a typed child yet
        self.text: list[str] = []
        self.method = ""

    def start(self, tag: str, attrs: object) -> None:
        self.text = []
        if tag == "value":
            self.values.append(False)
        elif tag in ("array", "struct"):
            self.containers.append([tag, [] if tag == "array" else {}, ""])

    def end(self, tag: str) -> None:
        text, self.text = "".join(self.text), []
        if tag == "methodName":
            self.method = text
        elif tag == "name" and self.containers:
            self.containers[-1][2] = text
        elif tag in _SCALARS:
            self.add(_SCALARS[tag](text))
        elif tag == "nil":
            self.add(None)
        elif tag in ("array", "struct"):
            self.add(self.containers.pop()[1])
        elif tag == "value" and not self.values.pop():
            self.add(text)  # an untyped value is a string

    def add(self, value: Any) -> None:
        if self.values:
            self.values[-1] = True
        if not self.containers:
            self.params.append(value)
        elif self.containers[-1][0] == "array":
            self.containers[-1][1].append(value)
        else:
            self.containers[-1][1][self.containers[-1][2]] = value


def loads(xml: str) -> tuple[list[Any], str]:
    """A ``methodCall``'s parameters and method name."""
    parser = _Parser()
    p = expat.ParserCreate()
    p.StartElementHandler = parser.start
    p.EndElementHandler = parser.end
    p.CharacterDataHandler = lambda data: parser.text.append(data)
    p.Parse(xml, True)
    return parser.params, parser.method


# ---- the session and the dispatcher -----------------------------------------------------


class _Session:
    """What a plug-in gets when the XenAPI SDK is not installed: just the session ref."""

    def __init__(self, session_ref: str) -> None:
        self._session = session_ref


def _real_session(session_ref: str) -> Any:
    url = os.environ.get("XENSTACK_URL", "")
    try:
        import XenAPI
    except ImportError:
        return _Session(session_ref)
    session = XenAPI.Session(url) if url else XenAPI.xapi_local()
    session._session = session_ref
    return session


class _LazySession:
    """The caller's session, made (and the SDK imported) at first use."""

    def __init__(self, session_ref: str) -> None:
        object.__setattr__(self, "_ref", session_ref)
        object.__setattr__(self, "_real", None)

    def _get(self) -> Any:
        real = object.__getattribute__(self, "_real")
        if real is None:
            real = _real_session(object.__getattribute__(self, "_ref"))
            object.__setattr__(self, "_real", real)
        return real

    def __getattr__(self, name: str) -> Any:
        if name == "_session":
            return object.__getattribute__(self, "_ref")
        return getattr(self._get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get(), name, value)


def dispatch(fn_table: Mapping[str, Handler]) -> None:
    """Decode argv[1], call the named function and print the XML-RPC response."""
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, method = loads(sys.argv[1])
    if method not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", str(method)]))
        return
    session_ref, args = str(params[0]), params[1] if len(params) > 1 else {}
    if not isinstance(args, dict):
        args = {}
    try:
        result = fn_table[method](_LazySession(session_ref), args)
        print(success_message(result))
    except SystemExit:
        raise
    except Failure as exn:
        print(failure_message(exn.params))
    except Exception as exn:
        print(failure_message(["XENAPI_PLUGIN_FAILURE", str(method), type(exn).__name__, str(exn)]))
