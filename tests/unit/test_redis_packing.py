"""The hiredis packer writes the same bytes as redis-py's own for every command we send."""

from __future__ import annotations

from redis.asyncio import Connection

from features.client import HiredisPackedConnection

COMMANDS = [
    ("EVALSHA", "a" * 40, 1, "sf:c:{c001}", 0, "", "of:0", "123", "s", b"\x92\x01\xc0", "x:m", b"\x80"),
    ("ZADD", "sf:due:{0}", 1767225600.5, "c1", 0.1, "c2", 1e300, "c3", -0.0, "c4", 7, "c5"),
    ("HSET", "k", "é✓ unicode", b"\x00\xff binary", "n", 3),
    ("HDEL", "sf:c:{c1}", "ob:ch-1", "ob:ch-2"),
    ("CLIENT SETNAME", "segflow"),
    (b"CONFIG GET", b"maxmemory"),
]


def test_hiredis_packing_equals_redis_py() -> None:
    ours, theirs = HiredisPackedConnection(), Connection()
    for command in COMMANDS:
        assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command)), command
    assert b"".join(ours.pack_commands(COMMANDS)) == b"".join(theirs.pack_commands(COMMANDS))
