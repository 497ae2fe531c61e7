"""The ``[xenserver]`` option group, keeping the names of nova's removed XenAPI driver where
they still mean something."""

from __future__ import annotations

from oslo_config import cfg

GROUP = cfg.OptGroup(
    "xenserver",
    title="XenServer options",
    help="How nova-compute reaches its XenAPI host (xenstack, XenServer, XCP-ng).",
)

IMAGE_HANDLERS = ("direct_vhd", "vdi_remote_stream", "vdi_local_dev")

CONNECTION_OPTS = [
    cfg.StrOpt(
        "connection_url",
        help="URL of the XenAPI host, e.g. http://169.254.0.1/ (a port may be given).",
    ),
    cfg.StrOpt("connection_username", default="root", help="XenAPI user name."),
    cfg.StrOpt("connection_password", secret=True, help="XenAPI password."),
    cfg.IntOpt(
        "connection_concurrent",
        default=5,
        min=1,
        help="Concurrent XenAPI sessions nova-compute keeps open.",
    ),
    cfg.FloatOpt("login_timeout", default=10.0, min=0, help="Seconds a XenAPI login may take."),
    cfg.StrOpt(
        "host_uuid",
        default="",
        help="The pool member this nova-compute drives; empty: the host it logs in to.",
    ),
    cfg.BoolOpt(
        "independent_compute",
        default=True,
        help="nova-compute is not a guest of the host it drives: no local block devices, "
        "no dom0 plug-ins beyond what the image handler needs.",
    ),
]

DRIVER_OPTS = [
    cfg.StrOpt(
        "image_handler",
        default="vdi_remote_stream",
        choices=IMAGE_HANDLERS,
        help="How images move between Glance and the host's SR: vdi_remote_stream "
        "(nova-compute streams through /import_raw_vdi and /export_raw_vdi), direct_vhd (the "
        "glance.py dom0 plug-in moves the VHD chain), vdi_local_dev (through a block device "
        "of the compute VM itself; nova-compute must run in a guest of the host).",
    ),
    cfg.StrOpt(
        "vif_driver",
        default="ovs",
        choices=("ovs", "bridge"),
        help="ovs: VIFs on the integration bridge carrying the neutron port id; bridge: VIFs "
        "on the network of the port's bridge, a VLAN made on the physical PIF when tagged.",
    ),
    cfg.StrOpt(
        "ovs_integration_bridge",
        default="br-int",
        help="The Open vSwitch integration bridge neutron's agent manages.",
    ),
    cfg.StrOpt(
        "sr_matching_filter",
        default="default-sr:true",
        help="Which SR holds instance disks: 'default-sr:true' (the pool's default SR) or "
        "'other-config:KEY=VALUE' (the first SR whose other_config has it).",
    ),
    cfg.StrOpt(
        "sr_base_path",
        default="/var/run/sr-mount",
        help="Where file SRs are mounted in dom0 (direct_vhd's plug-in writes there) when "
        "the PBD names no path.",
    ),
    cfg.IntOpt(
        "agent_timeout",
        default=60,
        min=0,
        help="Seconds to wait for the guest agent to report (PV drivers, IP addresses).",
    ),
    cfg.BoolOpt(
        "use_agent_default",
        default=True,
        help="Whether the guest agent sets passwords and networking when an image does not "
        "say (image property os_xenapi_use_agent / xenapi_use_agent_default).",
    ),
    cfg.IntOpt(
        "running_timeout",
        default=60,
        min=0,
        help="Seconds to wait for a VM to reach a power state.",
    ),
    cfg.StrOpt(
        "template",
        default="",
        help="name_label of the template VMs are cloned from; empty: VMs are built from "
        "scratch (HVM, UEFI off) as the old driver did.",
    ),
    cfg.BoolOpt("check_host", default=True, help="Check the host is the one nova-compute expects."),
]

ALL_OPTS = CONNECTION_OPTS + DRIVER_OPTS


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """For oslo-config-generator (entry point ``oslo.config.opts: xenstack_nova``)."""
    return [(GROUP, ALL_OPTS)]
