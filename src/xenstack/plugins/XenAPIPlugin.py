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

The first argument of each function is a XenAPI session already logged in with the caller's
session (when the ``XenAPI`` package is importable), else a bare object with ``_session``.
"""

from __future__ import annotations

import os
import sys
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any

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


def _exact(xml: str) -> str:
    # xmlrpc.client leaves CR as is, which any XML parser reads back as LF; only string
    # content can hold one, so a reference keeps it.
    return xml.replace("\r", "&#13;")


def success_message(result: Any) -> str:
    return _exact(xmlrpc.client.dumps(({"Status": "Success", "Value": result},), "", True))


def failure_message(description: list[str]) -> str:
    failure = {"Status": "Failure", "ErrorDescription": description}
    return _exact(xmlrpc.client.dumps((failure,), "", True))


class _Session:
    """What a plug-in gets when the XenAPI SDK is not installed: just the session ref."""

    def __init__(self, session_ref: str) -> None:
        self._session = session_ref


def _session(session_ref: str) -> Any:
    url = os.environ.get("XENSTACK_URL", "")
    try:
        import XenAPI
    except ImportError:
        return _Session(session_ref)
    session = XenAPI.Session(url) if url else XenAPI.xapi_local()
    session._session = session_ref
    return session


def dispatch(fn_table: Mapping[str, Handler]) -> None:
    """Decode argv[1], call the named function and print the XML-RPC response."""
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, decoded_method = xmlrpc.client.loads(sys.argv[1])
    method = str(decoded_method)
    if method not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", str(method)]))
        return
    session_ref, args = str(params[0]), params[1]
    if not isinstance(args, dict):
        args = {}
    try:
        result = fn_table[method](_session(session_ref), args)
        print(success_message(result))
    except SystemExit:
        raise
    except Failure as exn:
        print(failure_message(exn.params))
    except Exception as exn:
        print(failure_message(["XENAPI_PLUGIN_FAILURE", str(method), type(exn).__name__, str(exn)]))
