"""What neutron's agents need from a XenServer-like host beyond OVSDB and OpenFlow."""
