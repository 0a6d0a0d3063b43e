"""The gateway: owns every prompt template, picks a healthy worker, signs and times every call,
and keeps the audit trail. `app.create_app(GatewaySettings(...))` builds the FastAPI app.

    templates/  versions, labels, selection with fallback levels, cache (router/protocol/service/repository)
    workers/    URL validation, registry, health checks, client (timeouts, retries, circuit breaker)
    enhance/    POST /enhance-prompt and POST /chat
    audit/      asynchronous batched audit writer with a spill file, GET /audit
    registration.py  the worker side of self-registration and heartbeats
"""
