"""The QEMU backend: one ``qemu-system-x86_64`` per running domain, driven over QMP.

``cmdline`` builds the argv (pure), ``qmp`` speaks QMP through QEMU's own asyncio library,
``process`` launches QEMU detached (it outlives the toolstack) and finds it again,
``agent`` is the guest-agent channel (virtio-serial, XenStore-style keys), ``bridge`` the
default switch hooks (a Linux bridge), ``hostinfo`` the machine's facts and the KVM probe,
``backend`` the :class:`~xenstack.xenops.interface.Backend` itself.
"""
