"""XML-RPC ``<value>`` text of plain values: the wire's encoding, and the form XAPI stores.

Pure value encoding (no HTTP, no envelope): ``rpc.xmlrpc`` wraps it in method responses,
tasks keep results as this text, and the XVA metadata of exports is written with it.
"""

from __future__ import annotations

from typing import Any

from ..idl.types import DateTime, Record
from .xmltext import xml_safe

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def encode_value(value: Any, out: list[str]) -> None:
    """Append the XML-RPC ``<value>`` of a plain Python value to ``out``."""
    t = type(value)
    if t is Record:
        out.append(_record_xml(value))
    elif t is str:
        out.append("<value>")
        out.append(_escape(value) if _needs_escape(value) else value)
        out.append("</value>")
    elif t is dict:
        out.append("<value><struct>")
        for k, v in value.items():
            if type(k) is not str:
                k = str(k).lower() if type(k) is bool else str(k)
            out.append("<member><name>")
            out.append(_escape(k) if _needs_escape(k) else k)
            out.append("</name>")
            encode_value(v, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif t is list or t is tuple:
        out.append("<value><array><data>")
        for v in value:
            encode_value(v, out)
        out.append("</data></array></value>")
    elif t is bool:
        out.append(
            "<value><boolean>1</boolean></value>"
            if value
            else "<value><boolean>0</boolean></value>"
        )
    elif t is int:
        out.append(f"<value>{value}</value>")
    elif t is float:
        out.append(f"<value><double>{value!r}</double></value>")
    elif t is DateTime:
        out.append(f"<value><dateTime.iso8601>{value}</dateTime.iso8601></value>")
    elif value is None:
        out.append("<value></value>")
    else:
        encode_value(_fallback(value), out)


def _record_xml(record: Record) -> str:
    """A stored record's ``<value>``, encoded once per version of the record."""
    wire = record.wire
    if wire is None:
        wire = record.wire = {}
    cached = wire.get("xml")
    if not isinstance(cached, str):
        parts: list[str] = []
        encode_value(dict(record), parts)
        cached = wire["xml"] = "".join(parts)
    return cached


def _needs_escape(text: str) -> bool:
    # Printable text holds no control character (CR included) that XML needs spelled out.
    return not text.isprintable() or "&" in text or "<" in text or ">" in text


def _escape(text: str) -> str:
    return xml_safe(text).translate(_ESCAPES)


def _fallback(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"cannot encode {type(value).__name__} as XML-RPC")


def value_text(value: Any) -> str:
    """A value as the ``<value>`` string XAPI puts in ``task.result``."""
    out: list[str] = []
    encode_value(value, out)
    return "".join(out)
