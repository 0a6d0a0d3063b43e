"""Wire formats of the third-party APIs that both the worker and the gateway speak (A1111's
`/sdapi/v1` in a1111.py, Ollama's `/api` in ollama.py): pydantic models, the answers both build
and pure functions only, on the foundation floor, so the two surfaces validate one request type
by one set of rules instead of keeping copies in step. Where a side's rules differ, it
subclasses the shared model there and says why."""
