"""Asynchronous jobs: POST /jobs, status, progress, cancellation, SSE and webhooks (issue 10)."""
