"""The worker: composition of the API surfaces and engines into an app (app.py), its CLI,
lifecycle and drain (state.py), ops documents (ops/), role `all` dispatch, and
self-registration with a gateway (registration.py)."""
