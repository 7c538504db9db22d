"""Transport: the topics table, the wire codec, pub/sub sockets and input health."""

from perception.bus.endpoints import BusConfig, endpoint
from perception.bus.pubsub import Publisher, Subscriber
from perception.bus.topics import TOPICS, QueuePolicy, Topic, get_topic

__all__ = [
    "TOPICS",
    "BusConfig",
    "Publisher",
    "QueuePolicy",
    "Subscriber",
    "Topic",
    "endpoint",
    "get_topic",
]
