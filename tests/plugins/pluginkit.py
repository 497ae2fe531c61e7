"""os-xenapi's two ways of calling a dom0 plug-in, as its client sends them."""

from __future__ import annotations

import pickle
from typing import Any


def pickled(*args: Any, **kwargs: Any) -> dict[str, str]:
    """The ``params`` argument of ``call_plugin_serialized``: a protocol-0 pickle."""
    message = {"args": args, "kwargs": kwargs}
    return {"params": pickle.dumps(message, protocol=0).decode("latin-1")}


def call_serialized(x: Any, host: str, plugin: str, fn: str, /, *args: Any, **kwargs: Any) -> Any:
    """os-xenapi's ``call_plugin_serialized`` on ``host``: a protocol-0 pickle each way."""
    answer = x.host.call_plugin(host, plugin, fn, pickled(*args, **kwargs))
    return pickle.loads(answer.encode("latin-1"))
