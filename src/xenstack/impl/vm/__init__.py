"""VMs: records, the lifecycle table and its checks, power, clone, export/import."""
