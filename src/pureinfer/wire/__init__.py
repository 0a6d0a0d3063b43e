"""Wire formats of the third-party APIs that both the worker and the gateway speak (A1111's
`/sdapi/v1`): pydantic models and pure functions only, on the foundation floor, so the two
surfaces validate one request type by one set of rules instead of keeping copies in step."""
