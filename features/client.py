"""Redis clients by URL: a single server or a Redis Cluster.

``redis://host:port/db`` (or ``rediss://``) connects to one server; ``redis+cluster://host:port``
discovers a cluster from any of its nodes. The feature store works the same on both: every
key of one customer carries the customer's hash tag, so each script touches one slot.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

CLUSTER_SCHEME = "redis+cluster"


def connect(url: str) -> Redis | RedisCluster:
    """A client for ``url``; raises ValueError with a one-line reason for a malformed URL."""
    parts = urlsplit(url)
    if parts.scheme == CLUSTER_SCHEME:
        if not parts.hostname or not parts.port:
            raise ValueError(f"cluster URL needs host and port: {url!r}")
        return RedisCluster(host=parts.hostname, port=parts.port)
    if parts.scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url)
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r} (redis://, redis+cluster://)")
