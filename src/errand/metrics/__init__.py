"""Prometheus metrics, split by who records them."""
