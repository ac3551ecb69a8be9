"""Test support: real servers (Valkey, uvicorn, workers, SMTP, webhook receivers) and waiting helpers."""
