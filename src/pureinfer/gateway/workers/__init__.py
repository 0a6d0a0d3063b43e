"""Workers: URL validation, the registry (routing, health checks), the signed client with
timeouts, retries, failover and a circuit breaker per worker."""
