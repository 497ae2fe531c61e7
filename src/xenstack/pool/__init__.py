"""xenstack.pool: the pool's objects, its master and its members."""
