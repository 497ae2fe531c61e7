"""xenstack.storage: the VHD format library (``vhd``) and the NBD server (``nbd``).

Pure storage: nothing here knows XenAPI objects. Errors are in ``errors``.
"""
