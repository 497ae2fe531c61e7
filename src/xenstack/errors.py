"""The one error that crosses the wire, and the few that stay inside.

``ApiError(code, params)`` is what a XenAPI client sees: ``ErrorDescription = [code, *params]``.
Its codes and parameter order are XAPI's (see :mod:`xenstack.idl.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable


class XenstackError(Exception):
    """Root of xenstack's own exceptions."""


class ApiError(XenstackError):
    """A XenAPI error: the code and its parameters, all strings on the wire."""

    def __init__(self, code: str, params: Iterable[object] = ()) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        """The wire form: ``[code, param, ...]``."""
        return [self.code, *self.params]

    def __str__(self) -> str:
        return f"{self.code}({', '.join(self.params)})"


class ProtocolError(XenstackError):
    """A request that cannot be decoded into a call at all."""


def handle_invalid(cls: str, ref: str) -> ApiError:
    return ApiError("HANDLE_INVALID", [cls, ref])


def not_implemented(function: str) -> ApiError:
    return ApiError("NOT_IMPLEMENTED", [function])
