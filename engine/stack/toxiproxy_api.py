"""A small typed client of toxiproxy's HTTP API (proxies and toxics), on urllib.

A *proxy* listens on a port and forwards each TCP connection to its upstream; *toxics* added to
it act on every connection's data, open ones included: ``latency`` delays it, ``timeout`` holds
it (and closes the connection after its timeout, never when 0), ``reset_peer`` resets the
connection (TCP RST) once data arrives, after its timeout, ``bandwidth`` limits the rate and
``limit_data`` closes the connection after so many bytes. A disabled proxy closes its
connections and refuses new ones. Errors are :class:`StackError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.stack.processes import LOOPBACK, StackError

ToxicKind = Literal["latency", "timeout", "reset_peer", "bandwidth", "limit_data"]
Direction = Literal["upstream", "downstream"]
"""``downstream``: data from the upstream server to the client; ``upstream``: the other way."""


@dataclass(frozen=True)
class Toxic:
    """One toxic: its kind, integer attributes, direction and the share of connections it hits."""

    kind: ToxicKind
    attributes: Mapping[str, int]
    stream: Direction = "downstream"
    toxicity: float = 1.0
    name: str = ""
    """Empty: ``<kind>_<stream>`` (toxiproxy's own default)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.toxicity <= 1.0:
            raise ValueError(f"toxicity {self.toxicity} is not within 0..1")
        for key, value in self.attributes.items():
            if value < 0:
                raise ValueError(f"toxic {self.kind}: {key}={value} is negative")

    @property
    def key(self) -> str:
        """The name toxiproxy knows the toxic by."""
        return self.name or f"{self.kind}_{self.stream}"

    def body(self) -> dict[str, Any]:
        """The JSON body that creates it."""
        return {
            "name": self.key,
            "type": self.kind,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def latency(ms: int, jitter_ms: int = 0, stream: Direction = "downstream") -> Toxic:
    """Delay the data by ``ms`` ± ``jitter_ms`` milliseconds."""
    return Toxic("latency", {"latency": ms, "jitter": jitter_ms}, stream)


def timeout(ms: int = 0, stream: Direction = "downstream") -> Toxic:
    """Let no data through; close the connection after ``ms`` (0: hold it open, silent)."""
    return Toxic("timeout", {"timeout": ms}, stream)


def reset_peer(ms: int = 0, stream: Direction = "downstream") -> Toxic:
    """Reset the connection (TCP RST) ``ms`` after data arrives (0: at once)."""
    return Toxic("reset_peer", {"timeout": ms}, stream)


def bandwidth(kilobytes_per_second: int, stream: Direction = "downstream") -> Toxic:
    """Let at most ``kilobytes_per_second`` KB/s through."""
    return Toxic("bandwidth", {"rate": kilobytes_per_second}, stream)


def limit_data(max_bytes: int, stream: Direction = "downstream") -> Toxic:
    """Close the connection once ``max_bytes`` went through."""
    return Toxic("limit_data", {"bytes": max_bytes}, stream)


@dataclass(frozen=True)
class Proxy:
    """A proxy as toxiproxy reports it: addresses as ``host:port``, its toxics' names."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Proxy:
        """From the API's JSON."""
        toxics = tuple(str(t["name"]) for t in body.get("toxics") or ())
        name, listen, upstream = str(body["name"]), str(body["listen"]), str(body["upstream"])
        return cls(name, listen, upstream, bool(body["enabled"]), toxics)


class ToxiproxyClient:
    """toxiproxy's HTTP API on ``host:port``."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout_seconds: float = 5.0) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout_seconds = timeout_seconds

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise StackError(f"toxiproxy {method} {path}: HTTP {exc.code} {_error_of(exc)}") from None
        except OSError as exc:
            raise StackError(f"toxiproxy {method} {path}: {exc}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise StackError(f"toxiproxy {method} {path}: the answer is not JSON") from None

    def version(self) -> str:
        """The server's version (``/version``)."""
        return str(self._call("GET", "/version")["version"])

    def proxies(self) -> dict[str, Proxy]:
        """Every proxy, by name."""
        return {name: Proxy.of(body) for name, body in self._call("GET", "/proxies").items()}

    def create_proxy(self, name: str, listen_port: int, upstream: str, enabled: bool = True) -> Proxy:
        """A new proxy on ``127.0.0.1:listen_port`` to ``upstream`` (``host:port``)."""
        body = {"name": name, "listen": f"{LOOPBACK}:{listen_port}", "upstream": upstream, "enabled": enabled}
        return Proxy.of(self._call("POST", "/proxies", body))

    def ensure_proxy(self, name: str, listen_port: int, upstream: str) -> tuple[Proxy, bool]:
        """Proxy ``name`` from ``listen_port`` to ``upstream``, made (or remade, when it has other
        addresses) unless it exists; True when it was made."""
        existing = self.proxies().get(name)
        if existing is not None:
            if existing.listen == f"{LOOPBACK}:{listen_port}" and existing.upstream == upstream:
                return existing, False
            self.delete_proxy(name)
        return self.create_proxy(name, listen_port, upstream), True

    def delete_proxy(self, name: str, missing_ok: bool = True) -> None:
        """Delete proxy ``name`` (its connections close)."""
        if missing_ok and name not in self.proxies():
            return
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, name: str, enabled: bool) -> Proxy:
        """Enable or disable proxy ``name`` (disabled: connections closed, new ones refused)."""
        return Proxy.of(self._call("PATCH", f"/proxies/{name}", {"enabled": enabled}))

    def add_toxic(self, proxy: str, toxic: Toxic) -> None:
        """Add ``toxic`` to ``proxy`` (it acts on open connections too)."""
        self._call("POST", f"/proxies/{proxy}/toxics", toxic.body())

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove toxic ``name`` from ``proxy``."""
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")

    @contextlib.contextmanager
    def applied(self, proxy: str, toxic: Toxic) -> Iterator[None]:
        """``toxic`` on ``proxy`` for the ``with`` block."""
        self.add_toxic(proxy, toxic)
        try:
            yield
        finally:
            self.remove_toxic(proxy, toxic.key)

    @contextlib.contextmanager
    def disabled(self, proxy: str) -> Iterator[None]:
        """``proxy`` disabled for the ``with`` block."""
        self.set_enabled(proxy, False)
        try:
            yield
        finally:
            self.set_enabled(proxy, True)


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", "")).replace("\n", " ")[:200]
    except (OSError, ValueError, AttributeError):
        return ""
