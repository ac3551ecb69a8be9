"""Clients, API keys and the per-client limits, kept in Redis (below the API)."""
