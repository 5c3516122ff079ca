"""Which learner process is the active one: a lease in Redis, fenced checkpoint saves.

``<prefix>:learner:lease`` holds ``<token>:<generation>`` of the active learner, set with
``SET NX PX``: the token is random per process (host and pid first, for operators), the
generation comes from ``INCR <prefix>:learner:gen`` so every ownership has a new number. The
owner renews every ttl/3; a standby polls and takes the lease once it has expired. The
checkpoint is saved by a script that writes only while the saver's value still holds the lease,
so a learner that lost it (paused past its ttl, partitioned away) cannot overwrite the new
owner's state: its refused save tells it to stop learning and stand by.

Both keys of the save script must live on one server: the learner needs a single Redis (not a
Redis Cluster) for its own keys.
"""

from __future__ import annotations

import os
import secrets
import socket
from importlib import resources

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

_LUA = resources.files("engine.learner").joinpath("lua")
_RENEW = _LUA.joinpath("renew.lua").read_text()
_RELEASE = _LUA.joinpath("release.lua").read_text()
_SAVE = _LUA.joinpath("save.lua").read_text()


def lease_key(prefix: str) -> str:
    """The active learner's lease."""
    return f"{prefix}:learner:lease"


def generation_key(prefix: str) -> str:
    """The counter of learner ownerships."""
    return f"{prefix}:learner:gen"


def checkpoint_key_name(prefix: str) -> str:
    """The learner's one checkpoint blob."""
    return f"{prefix}:learner:ckpt"


def new_token() -> str:
    """A token unique to this process: host and pid (for operators), then random hex."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


class Lease:
    """This process's claim on being the active learner.

    Made with whatever client the learner was given; only a single server's is used (``save``
    writes two keys of different slots): ``LearnerService.run`` refuses a cluster first.
    """

    def __init__(
        self, client: Redis | RedisCluster, prefix: str, ttl_seconds: float, token: str | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self.token = token or new_token()
        self.value: str | None = None
        """``token:generation`` while this process believes it holds the lease."""
        self.generation: int | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._save = client.register_script(_SAVE)

    @property
    def key(self) -> str:
        """The lease key."""
        return lease_key(self._prefix)

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process holds it now.

        A lease this process still holds (its release failed while Redis was away) is renewed
        and kept, rather than waited out until it expires.
        """
        if self.value is not None and await self.renew():
            return True
        if await self._client.exists(self.key):
            return False
        generation = int(await self._client.incr(generation_key(self._prefix)))
        value = f"{self.token}:{generation}"
        if not await self._client.set(self.key, value, nx=True, px=self.ttl_ms):
            return False  # another learner was quicker
        self.value, self.generation = value, generation
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired, or another learner holds it)."""
        if self.value is None:
            return False
        if await self._renew(keys=[self.key], args=[self.value, self.ttl_ms]):
            return True
        self.value = None
        return False

    async def save(self, blob: bytes) -> bool:
        """Write the checkpoint if the lease is still ours; False (nothing written) otherwise."""
        if self.value is None:
            return False
        keys = [self.key, checkpoint_key_name(self._prefix)]
        if await self._save(keys=keys, args=[self.value, blob]):
            return True
        self.value = None
        return False

    async def release(self) -> None:
        """Give the lease up (a standby takes over at once instead of after the ttl)."""
        if self.value is not None:
            await self._release(keys=[self.key], args=[self.value])
        self.value = None

    async def holder(self) -> str | None:
        """The value of whoever holds the lease now."""
        value = await self._client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
