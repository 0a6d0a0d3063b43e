"""AUTOMATIC1111's API through the gateway: the gateway's image service (healthy image worker,
retries, signed calls, progress, audit) spoken in A1111's shapes."""
