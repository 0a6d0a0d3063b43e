"""Ollama's API through the gateway: the gateway's /chat (template, worker choice, retries, signed
calls, audit) spoken in Ollama's shapes."""
