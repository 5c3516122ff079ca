"""The local stack: real Apache Kafka (KRaft, one node), Debian redis-server and (optionally)
Debian prometheus and toxiproxy (built from its Go module) on loopback."""

from engine.stack.manager import StackStatus, down, kafka_tool, status, up
from engine.stack.processes import ServerStatus, StackError

__all__ = ["ServerStatus", "StackError", "StackStatus", "down", "kafka_tool", "status", "up"]
