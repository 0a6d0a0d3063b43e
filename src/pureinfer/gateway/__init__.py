"""The gateway (imports none of api/, worker/, engines/): owns every prompt template, picks a healthy worker, signs and times every call,
and keeps the audit trail. `app.create_app(GatewaySettings(...))` builds the FastAPI app.

    templates/  versions, labels, selection with fallback levels, cache (router/protocol/service/repository)
    workers/    URL validation, registry, health checks, client (timeouts, retries, circuit breaker)
    prompting/  POST /enhance-prompt and POST /chat: the only place prompts are assembled
    audit/      asynchronous batched audit writer with a spill file, GET /audit
"""
