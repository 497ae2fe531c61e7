"""A fresh install: the pool, its hosts' networks, storage and templates."""
