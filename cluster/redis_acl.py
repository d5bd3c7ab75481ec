"""The Redis ACL file for a deployment: one user for the replicas, allowed only what they do.

Redis access is fleet control, so the replicas' user may run only the commands they send, on
their own keys (``acp:*``) and channels (``acp:*``); the default user may only PING (so probes
need no password). The password is kept in the file as its SHA-256, never in clear:

    python -m cluster.redis_acl --password-file redis.password > users.acl
    redis-server --aclfile users.acl ...

The replicas then connect as ``redis://acp@HOST:6379/0`` with ``--store-password-file``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from cluster.shared_store import PREFIX
from cluster.store_access import read_password

USER = "acp"
COMMANDS = (
    # Connecting: the database of the URL, and health checks. (redis-py also names itself with
    # CLIENT SETINFO, which Redis 7.0 does not know and 7.2 refuses here: it ignores the error.)
    "select",
    "ping",
    # The scripts (claim, save, operator fields, removals, the audit log) and what they call.
    "evalsha",
    "script|load",
    "script|exists",
    # A save waits for a Redis replica's copy (--store-wait-replicas).
    "wait",
    "hincrby",
    "hsetnx",
    "hexists",
    "sismember",
    "scard",
    "incr",
    "zadd",
    "zremrangebyrank",
    # Reads and writes outside scripts.
    "hget",
    "hmget",
    "hgetall",
    "hkeys",
    "hset",
    "hdel",
    "smembers",
    "sadd",
    "srem",
    "set",
    "mget",
    "del",
    "zrevrangebyscore",
    "multi",
    "exec",
    "discard",
    # Announcements and their feeds.
    "publish",
    "subscribe",
    "unsubscribe",
)
"""Every command the replicas send, and those their scripts call (Redis checks those too)."""


def user_rules(password: str, user: str = USER) -> str:
    """The ACL line of the replicas' user."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    commands = " ".join(f"+{command}" for command in COMMANDS)
    return f"user {user} on #{digest} resetkeys ~{PREFIX}* resetchannels &{PREFIX}* -@all {commands}"


def acl_file(password: str, user: str = USER) -> str:
    """A whole ACL file: the replicas' user, and a default user that may only PING."""
    return f"user default on nopass resetkeys resetchannels -@all +ping\n{user_rules(password, user)}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.redis_acl", description="Print the Redis ACL file for the replicas' user."
    )
    parser.add_argument("--password-file", type=Path, required=True, help="the user's password (first line)")
    parser.add_argument("--user", default=USER, help="the user's name, as in the store's URL")
    args = parser.parse_args(argv)
    try:
        password = read_password(args.password_file)
    except ValueError as error:
        parser.error(str(error))
    sys.stdout.write(acl_file(password, args.user))
    return 0


if __name__ == "__main__":
    sys.exit(main())
