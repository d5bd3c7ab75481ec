"""A fault-schedule checker: random, seeded schedules of faults over real processes, then a check.

The pieces are kept apart so each can be trusted on its own: ``schedule`` (seed -> timed fault
steps, pure), ``history`` (what the devices saw: every press and its ack), ``checker`` (history
and final states -> anomalies, pure), ``runner`` (real redis-server, replicas, HAProxy, relays and
simulated devices), and ``run`` (many seeds, one JSON report).
"""
