"""The pool object, and hosts joining and leaving it."""
