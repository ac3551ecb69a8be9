"""Queues and jobs: the one place that imports bullmq."""
