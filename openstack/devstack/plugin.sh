#!/bin/bash
# DevStack plug-in for xenstack-nova: nova-compute (and neutron's OVS agent) driving a XenAPI
# host (xenstack, XenServer, XCP-ng). Documented, not run in CI (DevStack needs OpenStack's
# git hosting, MySQL, RabbitMQ and Keystone). See openstack/devstack/README.md.

XENSTACK_NOVA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

function install_xenstack_nova {
    pip_install -c "$XENSTACK_NOVA_DIR/constraints.txt" "$XENSTACK_NOVA_DIR"
}

function configure_xenstack_nova {
    iniset $NOVA_CPU_CONF DEFAULT compute_driver xenstack_ext.XenAPIDriver
    iniset $NOVA_CPU_CONF xenserver connection_url "$XENSTACK_URL"
    iniset $NOVA_CPU_CONF xenserver connection_username "$XENSTACK_USER"
    iniset $NOVA_CPU_CONF xenserver connection_password "$XENSTACK_PASSWORD"
    iniset $NOVA_CPU_CONF xenserver image_handler "$XENSTACK_IMAGE_HANDLER"
    iniset $NOVA_CPU_CONF xenserver vif_driver "$XENSTACK_VIF_DRIVER"
    iniset $NOVA_CPU_CONF xenserver ovs_integration_bridge "${OVS_BRIDGE:-br-int}"
    # the guests are the host's: no libvirt, no local instance disks
    iniset $NOVA_CPU_CONF DEFAULT force_config_drive True
}

function configure_xenstack_neutron {
    local agent_conf=/etc/neutron/plugins/ml2/openvswitch_agent.ini
    local helper_conf=/etc/neutron/xenapi.ini
    if [[ -n "$XENSTACK_OVSDB" ]]; then
        # the host's switch, reached over OVSDB and OpenFlow, no dom0 commands needed
        iniset $agent_conf ovs ovsdb_connection "$XENSTACK_OVSDB"
        iniset $agent_conf ovs of_listen_address "$HOST_IP"
    fi
    # commands that must act on the host go through its netwrap.py plug-in
    sudo install -m 0600 -o "$STACK_USER" /dev/null "$helper_conf"
    iniset $helper_conf xenapi connection_url "$XENSTACK_URL"
    iniset $helper_conf xenapi connection_username "$XENSTACK_USER"
    iniset $helper_conf xenapi connection_password "$XENSTACK_PASSWORD"
    iniset $agent_conf agent root_helper "xenstack-rootwrap-dom0 $helper_conf"
}

if [[ "$VIRT_DRIVER" == "xenstack" ]]; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        install_xenstack_nova
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        configure_xenstack_nova
        if is_service_enabled q-agt neutron-agent; then
            configure_xenstack_neutron
        fi
    fi
fi
