"""Test support: real servers (Valkey, uvicorn, workers, SMTP, webhooks) and waiting helpers."""
