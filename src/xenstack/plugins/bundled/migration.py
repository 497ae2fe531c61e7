#!/usr/bin/env python3
"""xenstack's ``migration.py``: both halves of nova's cold migration (os-xenapi's protocol).

Pickled calls (``call_plugin_serialized``):

``transfer_vhd(instance_uuid, host, vdi_uuid, sr_path, seq_num)``, on the source host: the VDI's
VHD ``<sr_path>/<vdi_uuid>.vhd`` is hard-linked as ``<seq_num>.vhd`` into a staging directory
made in the SR (same filesystem) and sent with ``rsync -a`` over ssh, as ``root@<host>``, to
the destination dom0's ``<images>/instance<instance_uuid>/``; the staging directory is then
removed. nova calls it once per VHD of the chain, the leaf as ``0``, its parent ``1``... It
answers ``None``.

- ssh's options (port, identity, known hosts...) are an administrator's, in
  ``$XENSTACK_STATE_DIR/etc/ssh/ssh_config``, passed with ``ssh -F`` when the file exists;
  otherwise ssh's own configuration with ``StrictHostKeyChecking=accept-new`` (os-xenapi
  turns checking off; a changed key is refused here). ssh never prompts (``BatchMode``).
- ``<images>``, the destination's staging area, is XenServer's ``/images`` unless
  ``$XENSTACK_STATE_DIR/etc/ssh/remote_images`` names another for that destination: lines of
  ``HOST DIRECTORY`` (``#`` comments; ``*`` for any host; the first match wins). A xenstack
  destination's area is ``STATE_DIR/images`` of the toolstack that receives; it is made on
  the destination when missing (``mkdir -p`` before the remote rsync).
- Unlike os-xenapi, a destination address of this machine is not copied to locally: several
  xenstack hosts may share a machine, each with its own state directory.

``move_vhds_into_sr(instance_uuid, sr_path, uuid_stack)``, on the destination: takes the chain
left in ``images/instance<uuid>/`` (``0.vhd`` the leaf, ``1.vhd`` ...; under
``$XENSTACK_STATE_DIR``, XenServer's ``/images`` otherwise) into the SR as ``import_vhds``
does for Glance, and answers ``{"root": {"uuid": ...}}``.
"""

import os
import re
import shlex
import shutil

import dom0_utils

# an instance uuid, or nova's "<uuid>_ephemeral_<n>" for an ephemeral disk: a plain name
_INSTANCE = re.compile(r"[0-9A-Za-z_-]{1,80}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# a host name or IPv4 address (never an ssh option, a user or a path), or [IPv6]
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\]")


def _state(*parts):
    root = os.environ.get("XENSTACK_STATE_DIR", "")
    return os.path.join(root, *parts) if root else ""


def _instance_dir(instance_uuid):
    if not isinstance(instance_uuid, str) or not _INSTANCE.fullmatch(instance_uuid):
        raise dom0_utils.PluginError(f"bad instance uuid: {instance_uuid!r}")
    return f"instance{instance_uuid}"


def _images(instance_uuid):
    return os.path.join(_state("images") or "/images", _instance_dir(instance_uuid))


def move_vhds_into_sr(session, instance_uuid, sr_path, uuid_stack):
    staging = _images(instance_uuid)
    imported = dom0_utils.import_vhds(sr_path, staging, list(uuid_stack))
    shutil.rmtree(staging, ignore_errors=True)
    return imported


def remote_images(host):
    """The destination's staging area: ``etc/ssh/remote_images``'s line for ``host`` (or
    ``*``), else XenServer's ``/images``."""
    path = _state("etc", "ssh", "remote_images")
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return "/images"
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) == 2 and fields[0] in (host, "*"):
            return fields[1].rstrip("/") or "/"
    return "/images"


def _ssh_command():
    """rsync's ``-e``: the administrator's ssh configuration when there is one."""
    config = _state("etc", "ssh", "ssh_config")
    ssh = ["ssh", "-o", "BatchMode=yes"]
    if config and os.path.isfile(config):
        ssh += ["-F", config]
    else:
        ssh += ["-o", "StrictHostKeyChecking=accept-new"]
    return " ".join(shlex.quote(part) for part in ssh)


def _check_transfer(host, vdi_uuid, sr_path, seq_num):
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise dom0_utils.PluginError(f"bad destination host: {host!r}")
    if not isinstance(vdi_uuid, str) or not _UUID.fullmatch(vdi_uuid):
        raise dom0_utils.PluginError(f"bad VDI uuid: {vdi_uuid!r}")
    source = os.path.join(str(sr_path), f"{vdi_uuid}.vhd")
    if not os.path.isfile(source):
        raise dom0_utils.PluginError(f"no VHD {source}")
    if isinstance(seq_num, bool) or not str(seq_num).isdigit():
        raise dom0_utils.PluginError(f"bad seq_num: {seq_num!r}")
    return source, int(seq_num)


def transfer_vhd(session, instance_uuid, host, vdi_uuid, sr_path, seq_num):
    import tempfile

    source, seq = _check_transfer(host, vdi_uuid, sr_path, seq_num)
    images = remote_images(host)
    dest = f"{images}/{_instance_dir(instance_uuid)}/"
    # the destination's staging area made first if it has none yet (a fresh xenstack host)
    mkdir = f"mkdir -p -- {shlex.quote(images)} && rsync"
    staging = tempfile.mkdtemp(prefix=".migration-", dir=sr_path)
    try:
        os.link(source, os.path.join(staging, f"{seq}.vhd"))
        rsync = ["rsync", "-a", "-e", _ssh_command(), f"--rsync-path={mkdir}", f"{staging}/",
                 f"root@{host}:{dest}"]  # fmt: skip
        dom0_utils.run_command(rsync)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None


if __name__ == "__main__":
    dom0_utils.register_plugin_calls(move_vhds_into_sr, transfer_vhd)
