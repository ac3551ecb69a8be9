"""errand: asynchronous jobs behind an HTTP API, on BullMQ queues."""

__version__ = "0.1.0"
