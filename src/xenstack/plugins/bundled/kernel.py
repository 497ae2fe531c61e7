#!/usr/bin/env python3
"""xenstack's ``kernel.py``: PV kernels and ramdisks copied out of VDIs (os-xenapi's protocol).

Plain calls (XAPI's string dict in, a string out), with the argument names nova sends:

- ``copy_vdi``: ``vdi-ref``, ``image-size`` and optionally ``cached-image`` (a Glance image
  id). The VDI is plugged into dom0 read-only, its first ``image-size`` bytes are copied from
  ``/dev/<VBD.device>`` into ``KERNEL_DIR/<vdi uuid>`` (and, with ``cached-image``, into
  ``KERNEL_DIR/<cached-image>`` as the cache), and the VBD is removed again. Answers the
  file's path.
- ``create_kernel_ramdisk``: ``cached-image`` and ``new-image-uuid``: copies the cached file
  to ``KERNEL_DIR/<new-image-uuid>`` and answers its path, or ``""`` when nothing is cached.
- ``remove_kernel_ramdisk``: ``kernel-file`` and/or ``ramdisk-file``: removes them (a
  missing file is not an error) and answers ``"ok"``.

``KERNEL_DIR`` is XenServer's ``/boot/guest``; here it is ``$XENSTACK_STATE_DIR/boot/guest``
(0700). Names are taken as single path components, and only files in ``KERNEL_DIR`` are
ever removed: a caller cannot reach anything else of dom0's file system.
"""

import contextlib
import os
import shutil

import dom0_utils
import XenAPIPlugin

CHUNK = 1 << 20


def kernel_dir():
    root = os.environ.get("XENSTACK_STATE_DIR", "")
    path = os.path.join(root, "boot", "guest") if root else "/boot/guest"
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _arg(args, name, optional=False):
    value = args.get(name, "")
    if not value and not optional:
        raise dom0_utils.PluginError(f"Argument {name} is required.")
    return value


def _in_kernel_dir(name):
    if not name or "/" in name or name in (".", ".."):
        raise dom0_utils.PluginError(f"bad file name: {name!r}")
    return os.path.join(kernel_dir(), name)


def _copy_from(device, size, targets):
    written = 0
    outs = [open(t, "wb") for t in targets]  # noqa: SIM115 - closed below
    try:
        with open(dom0_utils.make_dev_path(device), "rb") as src:
            while written < size:
                data = src.read(min(CHUNK, size - written))
                if not data:
                    raise dom0_utils.PluginError(
                        f"the VDI holds {written} bytes, not the {size} asked for"
                    )
                for out in outs:
                    out.write(data)
                written += len(data)
    finally:
        for out in outs:
            out.close()
    for target in targets:
        os.chmod(target, 0o600)


def copy_vdi(session, args):
    vdi = _arg(args, "vdi-ref")
    size = int(_arg(args, "image-size"))
    cached = _arg(args, "cached-image", optional=True)
    filename = _in_kernel_dir(session.xenapi.VDI.get_uuid(vdi))
    targets = [filename] + ([_in_kernel_dir(cached)] if cached else [])
    try:
        dom0_utils.with_vdi_in_dom0(session, vdi, True, lambda dev: _copy_from(dev, size, targets))
    except BaseException:
        for target in targets:
            _remove(target)
        raise
    return filename


def create_kernel_ramdisk(session, args):
    cached = _in_kernel_dir(_arg(args, "cached-image"))
    filename = _in_kernel_dir(_arg(args, "new-image-uuid"))
    if not os.path.isfile(cached):
        return ""
    shutil.copyfile(cached, filename)
    os.chmod(filename, 0o600)
    return filename


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def remove_kernel_ramdisk(session, args):
    paths = [_arg(args, n, optional=True) for n in ("kernel-file", "ramdisk-file")]
    for path in filter(None, paths):
        real = os.path.realpath(path)
        if os.path.dirname(real) != os.path.realpath(kernel_dir()):
            raise dom0_utils.PluginError(f"not a kernel or ramdisk of {kernel_dir()}: {path}")
        _remove(real)
    return "ok"


if __name__ == "__main__":
    XenAPIPlugin.dispatch(
        {
            "copy_vdi": copy_vdi,
            "create_kernel_ramdisk": create_kernel_ramdisk,
            "remove_kernel_ramdisk": remove_kernel_ramdisk,
        }
    )
