"""xenstack: a XenServer-compatible toolstack in Python."""

__version__ = "0.1.0"
