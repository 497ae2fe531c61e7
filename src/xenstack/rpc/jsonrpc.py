"""JSON-RPC 1.0 and 2.0 as XAPI speaks them on ``/jsonrpc``: representation only.

JSON can carry strings that XML cannot (``"\\u0000"``): the decoder marks them
:class:`~xenstack.core.xmltext.Unstorable` for the type check to refuse, and an answer holding a
string that is not even UTF-8 (a lone surrogate) is encoded with U+FFFD in its place.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..core.xmltext import mark, xml_safe
from ..errors import ProtocolError
from ..idl.types import DateTime, Record


class Request:
    """One decoded JSON-RPC request."""

    __slots__ = ("id", "method", "params", "version")

    def __init__(self, method: str, params: list[Any], id_: Any, version: str) -> None:
        self.method = method
        self.params = params
        self.id = id_
        self.version = version


def decode_call(body: bytes) -> Request:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProtocolError("a JSON-RPC request must be an object")
    method, params = doc.get("method"), doc.get("params", [])
    if not isinstance(method, str) or not method:
        raise ProtocolError("JSON-RPC request has no method")
    if isinstance(params, dict):
        params = list(params.values())
    if not isinstance(params, list):
        raise ProtocolError("JSON-RPC params must be an array")
    version = "2.0" if doc.get("jsonrpc") == "2.0" else "1.0"
    for p in params:  # the common call, printable strings only, is clean as it is
        if type(p) is not str or not p.isprintable():
            params = [mark(p) for p in params]
            break
    return Request(method, params, doc.get("id"), version)


_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS


def _default(value: Any) -> Any:
    """Encode what orjson leaves to us: records (cached per version), datetimes, sets."""
    if type(value) is Record:
        wire = value.wire
        if wire is None:
            wire = value.wire = {}
        cached = wire.get("json")
        if cached is None:
            cached = wire["json"] = orjson.dumps(dict(value), default=_default, option=_OPTIONS)
        return orjson.Fragment(cached)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple, list)):
        return list(value)
    raise TypeError


def encode_success(req: Request | None, value: Any) -> bytes:
    rid = None if req is None else req.id
    if req is not None and req.version == "2.0":
        doc: dict[str, Any] = {"jsonrpc": "2.0", "result": value, "id": rid}
    else:
        doc = {"result": value, "error": None, "id": rid}
    try:
        return orjson.dumps(doc, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:  # a stored string that is not UTF-8: never fail the answer
        return orjson.dumps(_utf8(doc), default=_default, option=_OPTIONS)


def _utf8(value: Any) -> Any:
    """``value`` as plain containers, its strings made encodable (the slow, rare path)."""
    if isinstance(value, str):
        return xml_safe(value)
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_utf8(v) for v in value]
    return value


def encode_failure(req: Request | None, description: list[str]) -> bytes:
    rid = None if req is None else req.id
    if req is None or req.version == "2.0":
        error = {"code": 1, "message": description[0], "data": description[1:]}
        doc: dict[str, Any] = {"jsonrpc": "2.0", "error": error, "id": rid}
    else:
        doc = {"result": None, "error": description, "id": rid}
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # an error quoting a string that is not UTF-8
        return orjson.dumps(_utf8(doc))


def encode_protocol_error(message: str) -> bytes:
    error = {"code": -32700, "message": "PARSE_ERROR", "data": [message]}
    return orjson.dumps({"jsonrpc": "2.0", "error": error, "id": None})


__all__ = ["DateTime", "Request", "decode_call", "encode_failure", "encode_success"]
