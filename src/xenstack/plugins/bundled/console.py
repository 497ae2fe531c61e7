#!/usr/bin/env python3
"""xenstack's ``console.py``: a guest's console log (os-xenapi's plug-in of that name).

``get_console_log`` takes ``dom_id`` and answers the last ``MAX_CONSOLE_BYTES`` of the
domain's console log, zlib-compressed and base64-encoded, as nova expects. The log is
``$XENSTACK_STATE_DIR/console/console.<dom_id>`` (where xenstack's backends keep it), else
XenServer's ``/var/log/xen/guest/console.<dom_id>``.
"""

import base64
import os
import zlib

import dom0_utils
import XenAPIPlugin

MAX_CONSOLE_BYTES = 102400


def _log_path(dom_id):
    state = os.environ.get("XENSTACK_STATE_DIR", "")
    for directory in (os.path.join(state, "console") if state else "", "/var/log/xen/guest"):
        path = os.path.join(directory, f"console.{dom_id}") if directory else ""
        if path and os.path.isfile(path):
            return path
    raise dom0_utils.PluginError(f"No console log for domain {dom_id}")


def get_console_log(session, arg_dict):
    dom_id = str(arg_dict["dom_id"])
    if not dom_id.isdigit():
        raise dom0_utils.PluginError(f"bad dom_id: {dom_id!r}")
    with open(_log_path(dom_id), "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - MAX_CONSOLE_BYTES))
        tail = fh.read()
    return base64.b64encode(zlib.compress(tail)).decode()


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"get_console_log": get_console_log})
