"""XML-RPC as XAPI speaks it: a representation layer, no policy.

Responses are wrapped in XAPI's envelope ``{Status: Success, Value: v}`` or
``{Status: Failure, ErrorDescription: [code, ...]}``. Ints go out as decimal strings, strings as
bare ``<value>text</value>``, datetimes as ``dateTime.iso8601``, ``None`` as ``""``.

No answer is ever ill-formed: a character XML 1.0 cannot carry (see :mod:`xenstack.core.xmltext`)
goes out as U+FFFD. A ``<base64>`` argument decodes to ``bytes``, which no declared string
type accepts (``FIELD_TYPE_ERROR``, as XAPI answers a base64 value where it wants a string).
"""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any
from xml.parsers.expat import ExpatError

from ..core.xmlrpc_values import encode_value
from ..errors import ProtocolError
from ..idl.types import DateTime

_FORBIDDEN = (b"<!DOCTYPE", b"<!doctype", b"<!ENTITY", b"<!entity")


# The common call: a method name and string parameters free of markup. Matched whole, it is
# decoded without building a parser; anything else goes through the full parser below, which
# refuses the characters XML cannot carry and turns CR and CRLF into LF, as XML says (so the
# text here excludes those).
_TEXT = "[^<&\x00-\x08\x0b-\x1f\ufffe\uffff]*"
_SIMPLE_CALL = re.compile(
    r"\s*(?:<\?xml[^>]*\?>)?\s*<methodCall>\s*<methodName>([A-Za-z0-9_.]+)</methodName>\s*"
    rf"(?:<params>((?:\s*<param>\s*<value>(?:<string>{_TEXT}</string>|{_TEXT})</value>\s*</param>)*)"
    r"\s*</params>\s*)?</methodCall>\s*"
)
# Within a matched call, each parameter's text (the structure is already checked).
_SIMPLE_PARAM = re.compile(r"<value>(?:<string>)?([^<&]*)<")


def decode_call(body: bytes) -> tuple[str, list[Any]]:
    """Parse a methodCall into (method name, params); raise ProtocolError if malformed."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return _decode_full(body)  # another declared encoding, or not text at all
    simple = _SIMPLE_CALL.fullmatch(text)
    if simple is not None:
        params = simple.group(2)
        return simple.group(1), _SIMPLE_PARAM.findall(params) if params else []
    return _decode_full(body)


def _decode_full(body: bytes) -> tuple[str, list[Any]]:
    if any(marker in body for marker in _FORBIDDEN):
        raise ProtocolError("document type declarations are not accepted")
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except (ExpatError, ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise ProtocolError(f"malformed XML-RPC request: {exc}") from exc
    except xmlrpc.client.ResponseError as exc:
        raise ProtocolError(f"malformed XML-RPC request: {exc}") from exc
    if not isinstance(method, str) or not method:
        raise ProtocolError("XML-RPC request has no method name")
    return method, [_normalise(p, 0) for p in params]


def _normalise(value: Any, depth: int) -> Any:
    """Turn xmlrpc.client's wrapper types into plain values; bound the nesting depth."""
    if depth > 64:
        raise ProtocolError("XML-RPC value nested too deeply")
    if isinstance(value, xmlrpc.client.DateTime):
        return DateTime(_datetime_text(value.value))
    if isinstance(value, xmlrpc.client.Binary):
        return bytes(value.data)
    if isinstance(value, list):
        return [_normalise(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v, depth + 1) for k, v in value.items()}
    return value


def _datetime_text(text: str) -> str:
    """XAPI's form is 20240101T00:00:00Z; clients send it with or without the Z."""
    return text if text.endswith("Z") else text + "Z"


_HEAD = "<?xml version='1.0'?>\n<methodResponse><params><param>"
_TAIL = "</param></params></methodResponse>\n"
_SUCCESS = (
    "<value><struct><member><name>Status</name><value>Success</value></member>"
    "<member><name>Value</name>"
)
_FAILURE = (
    "<value><struct><member><name>Status</name><value>Failure</value></member>"
    "<member><name>ErrorDescription</name>"
)


def encode_success(value: Any) -> bytes:
    out = [_HEAD, _SUCCESS]
    encode_value(value, out)
    out.append("</member></struct></value>")
    out.append(_TAIL)
    return "".join(out).encode()


def encode_failure(description: list[str]) -> bytes:
    out = [_HEAD, _FAILURE]
    encode_value(description, out)
    out.append("</member></struct></value>")
    out.append(_TAIL)
    return "".join(out).encode()


def encode_bare(value: Any) -> bytes:
    """A response without the envelope (``system.listMethods`` answers this way)."""
    out = [_HEAD]
    encode_value(value, out)
    out.append(_TAIL)
    return "".join(out).encode()


def encode_fault(code: int, message: str) -> bytes:
    """An XML-RPC fault: only for requests that never became a call."""
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode()
