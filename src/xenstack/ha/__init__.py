"""The per-host HA daemon: liveness (a lease and a network heartbeat) and fencing.

It knows neither the database nor etcd nor the wire: the composition root gives it its
lease, its peers' heartbeats and the fence (:mod:`.daemon`).
"""
