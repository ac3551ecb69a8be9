"""Servers errand runs itself: the embedded Valkey, and the process supervisor of `errand up`."""
