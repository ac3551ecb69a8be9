"""Webhooks: URL rules, signing (pure) and delivery."""
