"""The hypervisor interface: what the toolstack asks of a backend, and nothing more.

A backend manages *domains* (running or paused guests) on the hosts it is given, and the saved
images of suspended guests. It knows nothing of the database, sessions or XenAPI objects: the
orchestration (which host, which checks, what the database records) lives above it, in
:mod:`xenstack.impl`. Identifiers are opaque strings chosen by the caller (the toolstack uses
host and VM refs).

What a backend can do is declared as data in :class:`Capabilities`, so callers decide before
they ask instead of catching failures afterwards.

Failures are :class:`XenopsError` subclasses; the impl layer turns them into XenAPI errors.

What guests say about themselves (a real guest agent writes it into XenStore) reaches the
toolstack as :class:`GuestReport` values, through the listener the toolstack registers with
:meth:`Backend.on_guest_report`; the backend never writes records itself.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..errors import XenstackError

DomainState = Literal["running", "paused"]


# ---- errors -----------------------------------------------------------------------------


class XenopsError(XenstackError):
    """Root of the backend errors."""


class Unimplemented(XenopsError):
    """The backend does not implement this operation (see :mod:`.skeleton`)."""

    def __init__(self, operation: str) -> None:
        super().__init__(operation)
        self.operation = operation


class UnknownHost(XenopsError):
    """The host was never added to this backend."""


class NoSuchDomain(XenopsError):
    """No domain (or saved image) exists for this VM."""


class DomainExists(XenopsError):
    """The VM already has a domain or a saved image."""


class BadDomainState(XenopsError):
    """The domain is not in a state that allows the operation (e.g. unpause a running one)."""


class OutOfMemory(XenopsError):
    """The host cannot give the domain the memory it needs."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(needed, available)
        self.needed = needed
        self.available = available


class BootFailed(XenopsError):
    """The domain's boot loader or kernel could not be loaded: (vm id, message)."""

    def __init__(self, vm_id: str, message: str) -> None:
        super().__init__(vm_id, message)
        self.vm_id = vm_id
        self.message = message


class MissingPvDrivers(XenopsError):
    """The guest has no agent able to do what was asked (a clean reboot); the VM id."""


class DeviceError(XenopsError):
    """A device is already plugged, or is not plugged, or is not known."""


# ---- data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend offers; the toolstack consults this before asking.

    Every capability defaults to "not offered", so a backend names only what it can do.
    """

    name: str
    live_migration: bool = False
    suspend: bool = False
    pause: bool = False
    vcpu_hotplug: bool = False
    memory_ballooning: bool = False
    device_hotplug: bool = False
    max_vcpus: int = 0
    domain_types: tuple[str, ...] = ()
    # the hypervisor opens each disk itself: the toolstack exports it (DiskSpec.nbd_socket)
    opens_disks: bool = False
    # the domains are processes that outlive the toolstack (HA's daemon is then a process too)
    domains_outlive_toolstack: bool = False


@dataclass(frozen=True, slots=True)
class HostSpec:
    """A host as the backend sees it: memory it may hand out and CPUs it has."""

    host_id: str
    memory_total: int
    memory_reserved: int  # held by the control domain and the hypervisor itself
    cpus: int


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """One disk or CD drive of a domain (a VBD), as the hypervisor opens it.

    ``nbd_socket``/``export`` name the toolstack's NBD export of the VDI (a Unix socket and
    the export name to ask for), ``path`` a local file (an ISO); an ``empty`` drive has
    neither. ``device`` is the VBD's userdevice. ``vhd`` is the VDI's leaf file on a shared
    SR when the domain runs on a pool member: the member's toolstack exports it itself and
    fills in ``nbd_socket``/``export`` before its backend sees the disk.
    """

    device: str
    vdi_id: str = ""
    kind: str = "Disk"  # "Disk" or "CD"
    mode: str = "RW"  # "RO" or "RW"
    empty: bool = False
    nbd_socket: str = ""
    export: str = ""
    path: str = ""
    bootable: bool = False
    vhd: str = ""


@dataclass(frozen=True, slots=True)
class NicSpec:
    """One network interface of a domain (a VIF): its MAC and the switch port it plugs."""

    device: str
    vif_id: str = ""
    mac: str = ""
    network_id: str = ""
    bridge: str = ""
    mtu: int = 1500
    locking_mode: str = "network_default"
    other_config: tuple[tuple[str, str], ...] = ()


class PortHooks(Protocol):
    """The virtual switch side of a VIF (what XenServer's vif script does), given to a backend
    by the composition root."""

    async def vif_plug(self, vm_id: str, domid: int, nic: NicSpec, tap: str) -> None:
        """Make the tap ``tap`` (``vif<domid>.<device>``) exist and be a port of nic.bridge."""

    async def vif_unplug(self, vm_id: str, domid: int, nic: NicSpec, tap: str) -> None:
        """Remove the port and the tap."""


@dataclass(frozen=True, slots=True)
class BootSpec:
    """How a domain boots: firmware (``"bios"`` or ``"uefi"``) and the device order of
    ``HVM_boot_params`` (``c`` disk, ``d`` CD, ``n`` network), or a direct kernel boot when
    ``kernel`` is set (``PV_kernel``/``PV_ramdisk``/``PV_args``)."""

    firmware: str = "bios"
    order: str = "cd"
    kernel: str = ""
    ramdisk: str = ""
    kernel_args: str = ""


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """Everything a backend needs to build a domain for a VM."""

    vm_id: str
    name: str
    domain_type: str  # "pv", "hvm", "pvh" or "pv_in_pvh"
    memory_static_max: int
    memory_dynamic_min: int
    memory_dynamic_max: int
    memory_overhead: int
    vcpus_max: int
    vcpus: int
    vbds: tuple[str, ...] = ()  # userdevice numbers of the disks to attach
    vifs: tuple[str, ...] = ()  # device numbers of the network interfaces
    platform: tuple[tuple[str, str], ...] = ()
    # (device, network id) of each VIF: the network a guest's interface is on
    vif_networks: tuple[tuple[str, str], ...] = ()
    # what the VM's template says the guest runs ("debian-12", "windows"...); a simulated
    # guest reports its OS from it, a real one knows
    os_hint: str = ""
    disks: tuple[DiskSpec, ...] = ()  # in userdevice order
    nics: tuple[NicSpec, ...] = ()
    boot: BootSpec = BootSpec()
    uuid: str = ""  # the VM's uuid: names the domain's run directory
    xenstore_data: tuple[tuple[str, str], ...] = ()  # vm-data/* pushed to the guest agent

    def disk(self, device: str) -> DiskSpec | None:
        return next((d for d in self.disks if d.device == device), None)

    def nic(self, device: str) -> NicSpec | None:
        return next((n for n in self.nics if n.device == device), None)


@dataclass(frozen=True, slots=True)
class GuestReport:
    """What a domain's guest agent reports: its OS, PV drivers, addresses and features.

    ``domid`` names the domain that reported, so that a report about a domain since replaced
    (a reboot) can be told apart. ``networks`` maps ``"<device>/ip"`` and
    ``"<device>/ipv4/<n>"`` to addresses; ``features`` are the ``feature-*`` flags (XAPI's
    ``other`` map of VM_guest_metrics).
    """

    vm_id: str
    domid: int
    os_version: dict[str, str]
    pv_drivers_version: dict[str, str]
    networks: dict[str, str]
    features: dict[str, str]
    memory: dict[str, str] = field(default_factory=dict)  # "free"/"total" in KiB, as XAPI


GuestListener = Callable[[GuestReport], object]  # what it returns is ignored
# (vm_id, domid, key relative to /local/domain/<domid>, value or None when removed)
GuestKeyListener = Callable[[str, int, str, str | None], object]
# (vm_id, domid, why): a domain ended by itself: "poweroff", "reboot", "crash" or "vanished"
DomainExitListener = Callable[[str, int, str], object]


@dataclass(slots=True)
class DomainInfo:
    """A domain as the backend reports it. A snapshot: later changes need a new query."""

    vm_id: str
    host_id: str
    domid: int
    state: DomainState
    domain_type: str
    memory_actual: int
    memory_overhead: int
    vcpus: int
    start_time: float  # seconds since the epoch
    vbds: tuple[str, ...] = ()
    vifs: tuple[str, ...] = ()
    platform: dict[str, str] = field(default_factory=dict)
    vif_networks: tuple[tuple[str, str], ...] = ()  # as in the DomainSpec it was built from
    os_hint: str = ""


@dataclass(frozen=True, slots=True)
class DomainStats:
    """A domain's counters, for the metrics (``rrd``): cumulative since the domain was built.

    ``cpu_seconds`` has one entry per vCPU; memory figures are bytes (``memory_internal_free``
    as the guest reports it, 0 when it does not); the device maps are keyed by device name
    (``xvda``, a VIF's device number) and count bytes.
    """

    cpu_seconds: tuple[float, ...]
    memory_actual: int
    memory_target: int
    memory_internal_free: int
    vbd_read_bytes: dict[str, int] = field(default_factory=dict)
    vbd_write_bytes: dict[str, int] = field(default_factory=dict)
    vif_rx_bytes: dict[str, int] = field(default_factory=dict)
    vif_tx_bytes: dict[str, int] = field(default_factory=dict)
    # per disk, as QEMU's query-blockstats counts them: requests completed and the
    # nanoseconds they took; requests in flight now (only where the backend knows it)
    vbd_read_ops: dict[str, int] = field(default_factory=dict)
    vbd_write_ops: dict[str, int] = field(default_factory=dict)
    vbd_read_ns: dict[str, int] = field(default_factory=dict)
    vbd_write_ns: dict[str, int] = field(default_factory=dict)
    vbd_inflight: dict[str, int] = field(default_factory=dict)


# ---- the contract -----------------------------------------------------------------------


class Backend(abc.ABC):
    """The narrow interface every hypervisor backend implements.

    Host calls are synchronous and cheap. VM and device calls are coroutines: a real backend
    waits for the hypervisor, the simulator may wait a configured time. Every call either does
    all of its work or raises a :class:`XenopsError` having changed nothing.
    """

    capabilities: Capabilities
    guest_listener: GuestListener | None = None
    guest_key_listener: GuestKeyListener | None = None
    exit_listener: DomainExitListener | None = None

    def on_guest_keys(self, listener: GuestKeyListener | None) -> None:
        """Call ``listener(vm_id, domid, key, value)`` with every key a guest writes (value
        None: removed), keys relative to ``/local/domain/<domid>``."""
        self.guest_key_listener = listener

    def report_guest_key(self, vm_id: str, domid: int, key: str, value: str | None) -> None:
        if self.guest_key_listener is not None:
            self.guest_key_listener(vm_id, domid, key, value)

    async def guest_write(self, vm_id: str, key: str, value: str) -> None:
        """Send a host-to-guest key (``control/shutdown``...) to the domain's guest agent."""
        raise Unimplemented("guest_write")

    def on_domain_exit(self, listener: DomainExitListener | None) -> None:
        """Call ``listener(vm_id, domid, why)`` when a domain ends without being asked (the
        guest powered off, rebooted or crashed, or its process vanished); the toolstack
        applies the VM's ``actions_after_*``. The domain is gone from the backend by then."""
        self.exit_listener = listener

    def report_exit(self, vm_id: str, domid: int, why: str) -> None:
        if self.exit_listener is not None:
            self.exit_listener(vm_id, domid, why)

    async def adopt(self, host_id: str, spec: DomainSpec, info: DomainInfo) -> DomainInfo | None:
        """Take back a domain that outlived a toolstack restart (the database says it runs);
        return what it is now, or None if it is gone (its exit is not reported)."""
        return info

    async def host_facts(self, probe: bool = True) -> dict[str, object] | None:
        """What the machine under a real backend is: ``memory_total`` (bytes), ``cpu_info``
        (host.cpu_info's map) and ``capabilities`` (host.capabilities); None for a backend
        whose hosts are made up (the simulator). Without ``probe``, at once: what needs a
        slow probe (e.g. whether KVM works) is its last known or safe value."""
        return None

    async def close(self) -> None:
        """The toolstack stops: let go of the domains (they keep running)."""
        return None

    def console(self, vm_id: str) -> str:
        """The Unix socket of the domain's RFB (VNC) console, or "" if it has none."""
        return ""

    def console_log(self, vm_id: str) -> str:
        """The path of the domain's serial console log, or "" if it has none."""
        return ""

    def on_guest_report(self, listener: GuestListener | None) -> None:
        """Call ``listener`` (on the event loop) with every guest agent report from now on;
        None stops the reports. One listener per backend: the toolstack that owns it."""
        self.guest_listener = listener

    def report_guest(self, report: GuestReport) -> None:
        """Hand a guest agent's report to the listener, if there is one (for backends)."""
        if self.guest_listener is not None:
            self.guest_listener(report)

    # HOST ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def host_add(self, spec: HostSpec) -> None:
        """Make a host known; adding a known host again replaces its spec."""

    @abc.abstractmethod
    def host_remove(self, host_id: str) -> None:
        """Forget a host that has no domains left."""

    @abc.abstractmethod
    def host_ids(self) -> list[str]:
        """The known hosts."""

    @abc.abstractmethod
    def host_memory_free(self, host_id: str) -> int:
        """Bytes a new domain could still get on the host."""

    @abc.abstractmethod
    def host_domains(self, host_id: str) -> list[DomainInfo]:
        """The domains the host runs."""

    # VM -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def vm_info(self, vm_id: str) -> DomainInfo | None:
        """The VM's domain, or None if it has none (halted or suspended)."""

    @abc.abstractmethod
    def vm_has_image(self, vm_id: str) -> bool:
        """Whether a suspended image of the VM is kept."""

    @abc.abstractmethod
    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        """Build and boot a domain on the host; raise OutOfMemory if it does not fit."""

    @abc.abstractmethod
    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        """Destroy the domain; ``clean`` asks the guest first."""

    @abc.abstractmethod
    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        """Restart the guest in a fresh domain on the same host, with ``spec`` applied."""

    @abc.abstractmethod
    async def vm_pause(self, vm_id: str) -> DomainInfo:
        """Stop scheduling the domain's VCPUs."""

    @abc.abstractmethod
    async def vm_unpause(self, vm_id: str) -> DomainInfo:
        """Schedule a paused domain again."""

    @abc.abstractmethod
    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        """Save the domain's memory to an image, destroy the domain; return the image size.

        ``image`` is the suspend VDI to write into (a backend that keeps images itself may
        ignore it)."""

    @abc.abstractmethod
    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        """Rebuild the domain from its image on the host; the image is consumed. ``spec`` is
        the domain to rebuild, ``image`` the suspend VDI holding the memory."""

    @abc.abstractmethod
    async def vm_save_image(self, vm_id: str, image_id: str, image: DiskSpec | None = None) -> int:
        """Save a copy of a live domain's memory as ``image_id``; the domain runs on (a paused
        one stays paused, so its disks can be snapshotted at the same instant). ``image`` is
        the checkpoint's suspend VDI to write into (a backend that keeps images may ignore it)."""

    @abc.abstractmethod
    def vm_copy_image(self, image_id: str, vm_id: str) -> None:
        """Make a copy of image ``image_id`` the saved image of ``vm_id`` (revert)."""

    @abc.abstractmethod
    def vm_discard_image(self, vm_id: str) -> None:
        """Drop a suspended image (hard shutdown of a suspended VM); no error if none."""

    @abc.abstractmethod
    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        """Move a running or paused domain to another host, keeping its state."""

    @abc.abstractmethod
    async def vm_set_vcpus(self, vm_id: str, vcpus: int) -> DomainInfo:
        """Hot-plug or unplug VCPUs (up to the domain's maximum)."""

    @abc.abstractmethod
    async def vm_set_memory_dynamic_range(self, vm_id: str, low: int, high: int) -> DomainInfo:
        """Balloon the domain within [low, high], as far as the host allows."""

    @abc.abstractmethod
    def vm_reset(self, vm_id: str) -> None:
        """Forget the VM's domain and image without asking anything (power_state_reset)."""

    async def vbd_media(self, vm_id: str, device: str, disk: DiskSpec) -> None:
        """Insert (``disk`` not empty) or eject a CD in a running domain's drive."""
        raise Unimplemented("vbd_media")

    # VBD / VIF ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def vbd_plug(self, vm_id: str, device: str, disk: DiskSpec | None = None) -> None:
        """Attach a disk to a running domain (``disk``: what to open)."""

    @abc.abstractmethod
    async def vbd_unplug(self, vm_id: str, device: str) -> None:
        """Detach a disk from a running domain."""

    @abc.abstractmethod
    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        """Attach a network interface to a running domain (``nic``: its port)."""

    @abc.abstractmethod
    async def vif_unplug(self, vm_id: str, device: str) -> None:
        """Detach a network interface from a running domain."""

    # Metrics ------------------------------------------------------------------------------

    def vm_stats(self, vm_id: str) -> DomainStats | None:
        """The domain's counters now, or None if it has none (or the backend keeps none)."""
        return None

    # Moving a domain to another backend (another toolstack's) --------------------------
    #
    # Within one backend, ``vm_migrate`` moves a domain. Between two (the hosts of a pool are
    # toolstacks of their own), the caller drives both: ``vm_migrate_receive`` on the
    # destination, ``vm_migrate_send`` on the source, then ``vm_migrate_finish`` on the
    # destination with what the send returned (``vm_migrate_abort`` if the send failed). A
    # saved image (a suspended VM resumed elsewhere) moves with ``vm_image_send`` and
    # ``vm_image_receive``. Backends that cannot leave these raise ``Unimplemented``.

    async def vm_migrate_receive(self, host_id: str, spec: DomainSpec, memory: int) -> str:
        """Get ready to take ``spec``'s domain on ``host_id`` (``memory`` bytes, overhead
        included, are held for it); return where the sender sends its state ("" when the
        state travels with ``vm_migrate_send``'s answer)."""
        raise Unimplemented("vm_migrate_receive")

    async def vm_migrate_send(self, vm_id: str, to: str) -> dict[str, object]:
        """Send the domain's state to the receiver at ``to``; the domain leaves this
        backend. Return what the receiver needs besides (JSON-able data)."""
        raise Unimplemented("vm_migrate_send")

    async def vm_migrate_finish(self, vm_id: str, state: dict[str, object]) -> DomainInfo:
        """Run the domain received (``state``: what ``vm_migrate_send`` answered)."""
        raise Unimplemented("vm_migrate_finish")

    def vm_migrate_abort(self, vm_id: str) -> None:
        """Drop what ``vm_migrate_receive`` prepared (the send failed); no error if none."""
        return None

    async def vm_migrate_release(self, vm_id: str) -> None:
        """The destination runs the domain sent: let go of what the source kept (a QEMU
        paused after sending, to continue should the destination fail); no error if none."""
        return None

    def vm_migrating_in(self, vm_id: str) -> bool:
        """Whether a migration's destination is being prepared here for ``vm_id`` (its
        devices are in use although it has no domain yet)."""
        return False

    def vm_image_send(self, vm_id: str) -> dict[str, object]:
        """Hand the VM's saved image to another backend: it leaves this one. Return it as
        JSON-able data ({} for a backend whose image lives in the suspend VDI itself)."""
        raise Unimplemented("vm_image_send")

    def vm_image_receive(self, vm_id: str, image: dict[str, object]) -> None:
        """Keep ``image`` (from another backend's ``vm_image_send``) as the VM's."""
        raise Unimplemented("vm_image_receive")

    # Triggers -----------------------------------------------------------------------------

    async def vm_send_trigger(self, vm_id: str, trigger: str) -> None:
        """Press one of a running domain's hardware buttons, named as ``xl trigger`` names
        them: ``nmi``, ``reset``, ``power`` (the ACPI power button), ``init``, ``sleep``,
        ``s3resume``. Unimplemented for a trigger the backend cannot send."""
        raise Unimplemented("send_trigger")

    async def refresh_stats(self) -> None:
        """Read every domain's counters afresh for :meth:`vm_stats` (called before each
        metrics tick): a backend whose counters take I/O to read (QEMU's QMP, a member's
        toolstack) reads them here; :meth:`vm_stats` then answers from what was read."""
        return None
