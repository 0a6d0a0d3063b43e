"""The OpenAI-compatible text surface: `POST /v1/chat/completions`, `GET /v1/models`."""
