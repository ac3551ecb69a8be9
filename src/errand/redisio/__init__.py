"""General Redis clients: connections per process and the pipelined client."""
