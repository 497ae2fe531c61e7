"""SRs, PBDs, SM drivers and VDIs: rows, file-backed VDIs, disk transfers."""
