"""The HTTP API: routes per resource, request parsing, problem documents."""
