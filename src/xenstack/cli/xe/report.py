"""How ``xe`` reports a XenAPI error: a message line, then ``name: value`` per parameter."""

from __future__ import annotations

from .client import Client, ConnectError, XenApiError
from .errors_text import PARAM_CLASSES, message_for


def server_error(client: Client, err: XenApiError) -> str:
    from ...idl.errors import ERROR_PARAMS

    values = [
        _ref_text(client, name, v)
        for name, v in zip(ERROR_PARAMS.get(err.code, ()), err.params, strict=False)
    ]
    values += [_ref_text(client, "", v) for v in err.params[len(values) :]]
    if err.code not in ERROR_PARAMS:
        return f"Error code: {err.code}\nError parameters: {', '.join(values)}\n"
    names = list(ERROR_PARAMS[err.code])
    lines = [message_for(err.code)]
    for i in range(max(len(names), len(values))):
        name = names[i] if i < len(names) else "<extra>"
        value = values[i] if i < len(values) else "<unknown>"
        lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n"


# where to look for a reference whose parameter name does not tell its class
GUESSES = ("VM", "VBD", "VIF", "VDI", "SR", "PIF", "network", "host", "PBD", "task", "pool")


def _ref_text(client: Client, name: str, value: str) -> str:
    """A reference shown as ``uuid (name-label)`` where the object can be found."""
    if not value.startswith("OpaqueRef:") or value == "OpaqueRef:NULL" or not client.session:
        return value
    cls = PARAM_CLASSES.get(name.lower())
    for guess in (cls,) if cls else GUESSES:
        try:
            rec = client.call(f"{guess}.get_record", value)
        except XenApiError:
            continue
        except ConnectError:
            return value
        label = rec.get("name_label")
        return f"{rec.get('uuid')} ({label})" if label is not None else str(rec.get("uuid"))
    return value
