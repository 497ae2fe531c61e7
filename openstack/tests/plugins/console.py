#!/usr/bin/env python3
"""A dom0 ``console.py`` plug-in for the tests: ``get_console_log(dom_id)`` answers the guest's
console log (``$XENSTACK_STATE_DIR/console/console.<domid>``, as XenServer's dom0 keeps
``/var/log/xen/guest/console.<domid>``), zlib-compressed and base64-encoded as the old
os-xenapi plug-in did; a guest that has written nothing has an empty log."""

import base64
import os
import zlib

import XenAPIPlugin

MAX = 100 * 1024


def get_console_log(session, args):
    dom_id = args.get("dom_id", "")
    if not dom_id.isdigit():
        raise XenAPIPlugin.Failure("INVALID_VALUE", ["dom_id", dom_id])
    # plug-ins run in a clean environment: the host names its state, whose console/ holds the logs
    state = os.environ.get("XENSTACK_STATE_DIR", "")
    base = os.path.join(state, "console") if state else "/var/log/xen/guest"
    try:
        with open(os.path.join(base, f"console.{dom_id}"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - MAX))
            data = f.read()
    except FileNotFoundError:
        data = b""
    return base64.b64encode(zlib.compress(data)).decode("ascii")


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"get_console_log": get_console_log})
