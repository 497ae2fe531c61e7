"""A XenStore per host, with Xen's semantics, speaking Xen's wire protocol.

- :mod:`.paths`: path syntax and resolution against a domain's home.
- :mod:`.perms`: node permissions (owner, ``r``/``w``/``b``/``n`` for others and per domain).
- :mod:`.tree`: the tree of nodes, copy-on-write, with per-domain quotas.
- :mod:`.store`: :class:`XenStore` and its :class:`Connection` (a domain's view: reads,
  writes, watches with tokens, transactions answered ``EAGAIN`` on conflict, the special
  ``@introduceDomain``/``@releaseDomain`` watches).
- :mod:`.wire`: ``xs_wire.h``'s message types and framing; :mod:`.server`: the Unix socket
  (dom0's connection); :mod:`.client`: a small blocking client for the dom0 tools.
"""

from .errors import XsError
from .store import Connection, XenStore

__all__ = ["Connection", "XenStore", "XsError"]
