#!/usr/bin/env python3
"""xenstack's ``migration.py``: the receiving half of nova's cold migration (os-xenapi's).

``move_vhds_into_sr(instance_uuid, sr_path, uuid_stack)`` (a pickled call) takes the chain
a source host left in ``images/instance<uuid>/`` (``0.vhd`` the leaf, ``1.vhd`` ...; under
``$XENSTACK_STATE_DIR``, XenServer's ``/images`` otherwise) into the SR as ``import_vhds``
does for Glance, and answers ``{"root": {"uuid": ...}}``. (``transfer_vhd``, the sending
half, needs ssh between two real dom0s and is not provided.)
"""

import os
import re
import shutil

import dom0_utils


def _images(instance_uuid):
    if not re.fullmatch(r"[0-9a-fA-F-]{1,64}", instance_uuid):
        raise dom0_utils.PluginError(f"bad instance uuid: {instance_uuid!r}")
    root = os.environ.get("XENSTACK_STATE_DIR", "")
    base = os.path.join(root, "images") if root else "/images"
    return os.path.join(base, f"instance{instance_uuid}")


def move_vhds_into_sr(session, instance_uuid, sr_path, uuid_stack):
    staging = _images(instance_uuid)
    imported = dom0_utils.import_vhds(sr_path, staging, list(uuid_stack))
    shutil.rmtree(staging, ignore_errors=True)
    return imported


if __name__ == "__main__":
    dom0_utils.register_plugin_calls(move_vhds_into_sr)
