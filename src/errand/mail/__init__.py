"""Email: templates, and the transports that deliver rendered messages (simulated, SMTP)."""
