"""The engine: the worker process and the loops that fetch, lock and finish jobs."""
