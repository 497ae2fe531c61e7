"""Networks, PIFs, VLANs, bonds and tunnels."""
