"""Webhooks: URL rules, signing (pure) and delivery; `verify` for the receiving side."""

from errand.webhooks.verify import InvalidWebhook, verify

__all__ = ["InvalidWebhook", "verify"]
