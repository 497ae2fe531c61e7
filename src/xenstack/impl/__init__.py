"""Local work, one module per XenAPI class. Importing this package registers them all."""

from . import event, session, task

__all__ = ["event", "session", "task"]
