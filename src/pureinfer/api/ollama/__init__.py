"""Ollama's API on the worker: `POST /api/chat`, `POST /api/generate` (NDJSON streams, or one JSON
object with `stream: false`), `GET /api/tags`, `POST /api/show`, `GET /api/version`."""
