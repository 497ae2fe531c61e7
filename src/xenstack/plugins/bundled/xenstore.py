#!/usr/bin/env python3
"""xenstack's ``xenstore.py``: a domain's XenStore records, as os-xenapi's plug-in of that name.

Every function takes ``dom_id`` and ``path`` (relative to ``/local/domain/<dom_id>``) and
answers JSON:

- ``read_record``: the value; with ``ignore_missing_path`` a missing record is ``"None"``.
- ``write_record``: writes ``value`` (a JSON text, stored as given) and answers it.
- ``list_records``: ``{name: value}`` of the records under ``path`` (a value that is JSON
  is decoded), ``{}`` when there is nothing.
- ``delete_record``: removes the record (and what is under it); answers ``""``.
"""

import json

import dom0_utils
import XenAPIPlugin


def _path(arg_dict):
    dom_id, path = arg_dict["dom_id"], arg_dict["path"].strip("/")
    if not str(dom_id).isdigit():
        raise dom0_utils.PluginError(f"bad dom_id: {dom_id!r}")
    return f"/local/domain/{dom_id}/{path}" if path else f"/local/domain/{dom_id}"


def _truthy(value):
    return str(value).lower() in ("true", "1", "yes")


@dom0_utils.jsonify
def read_record(session, arg_dict):
    value = dom0_utils.xenstore_read(_path(arg_dict))
    if value is None:
        if _truthy(arg_dict.get("ignore_missing_path", False)):
            return "None"
        raise dom0_utils.XenstoreError(f"no record at {_path(arg_dict)}")
    return value.strip()


@dom0_utils.jsonify
def write_record(session, arg_dict):
    dom0_utils.xenstore_write(_path(arg_dict), arg_dict["value"])
    return arg_dict["value"]


def _decoded(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


@dom0_utils.jsonify
def list_records(session, arg_dict):
    base = _path(arg_dict)
    names = dom0_utils.xenstore_list(base)
    if not names:
        return {}
    out = {}
    for name in names:
        value = dom0_utils.xenstore_read(f"{base}/{name}")
        out[name] = _decoded(value) if value else value
    return out


@dom0_utils.jsonify
def delete_record(session, arg_dict):
    dom0_utils.xenstore_rm(_path(arg_dict))
    return ""


if __name__ == "__main__":
    XenAPIPlugin.dispatch(
        {
            "read_record": read_record,
            "write_record": write_record,
            "list_records": list_records,
            "delete_record": delete_record,
        }
    )
