"""The process's file descriptors, split so that operators' HTTP connections cannot take the devices'.

Every device is one gRPC connection, every operator connection one socket, and both come out
of the same ``RLIMIT_NOFILE``. At start the soft limit is raised to the hard one, a reserve is
kept for files, Redis and metrics scrapes, and the operator API gets at most a share of the
rest: however many idle HTTP sockets are opened, gRPC can still accept devices.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

RESERVED = 32
"""Descriptors kept for what opens files or sockets while serving: the state store, uploads and
their decoding, Redis, metrics scrapes."""

ADMIN_SHARE = 0.25
"""The operator API may hold at most this share of the descriptors left after the reserve."""

ADMIN_MINIMUM = 4
"""An operator API gets at least this many connections, however small the limit."""

MAX_SOFT_LIMIT = 1 << 20
"""Where an unlimited hard limit is raised to (a soft limit must be a number)."""


@dataclass(frozen=True, slots=True)
class DescriptorLimit:
    soft: int
    raised_from: int
    """The soft limit before it was raised (equal to ``soft`` when it was not)."""


def raise_descriptor_limit() -> DescriptorLimit:
    """Soft up to hard: the default soft limit (often 1,024) is far below what a fleet needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_SOFT_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return DescriptorLimit(wanted if soft == resource.RLIM_INFINITY else soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return DescriptorLimit(soft, soft)
    return DescriptorLimit(wanted, soft)


def open_descriptors() -> int:
    """How many descriptors the process holds now (0 where /proc cannot say)."""
    try:
        return max(len(os.listdir("/proc/self/fd")) - 1, 0)  # less the listing's own
    except OSError:
        return 0


@dataclass(frozen=True, slots=True)
class DescriptorBudget:
    limit: DescriptorLimit
    open_at_start: int
    reserved: int
    admin_connections: int
    """Operator API connections open at once: the configured cap, or the API's share if smaller."""
    admin_per_client: int
    devices: int
    """What is left for device connections."""

    def describe(self) -> str:
        raised = (
            f" (raised from {self.limit.raised_from})" if self.limit.raised_from != self.limit.soft else ""
        )
        admin = (
            f"the operator API may hold {self.admin_connections} connections"
            f" ({self.admin_per_client} per client address)"
            if self.admin_connections
            else "no operator API"
        )
        return (
            f"file descriptors: limit {self.limit.soft}{raised}, {self.open_at_start} open at start,"
            f" {self.reserved} in reserve; {admin}; {self.devices} left for devices"
        )


def plan_budget(
    limit: DescriptorLimit, open_now: int, admin_wanted: int, admin_per_client_wanted: int
) -> DescriptorBudget:
    """``admin_wanted`` 0: no operator API, so the devices get everything left."""
    free = max(limit.soft - open_now - RESERVED, 0)
    admin = 0
    if admin_wanted > 0:
        admin = min(admin_wanted, max(ADMIN_MINIMUM, int(free * ADMIN_SHARE)))
    return DescriptorBudget(
        limit=limit,
        open_at_start=open_now,
        reserved=RESERVED,
        admin_connections=admin,
        admin_per_client=min(admin_per_client_wanted, admin),
        devices=max(free - admin, 0),
    )
