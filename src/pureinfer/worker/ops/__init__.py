"""The worker's ops documents: /health, /health/live, /health/ready, /status, /worker/info, /metrics."""
