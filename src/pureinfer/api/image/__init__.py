"""The image surface: the native `POST /generate` (image), OpenAI's `POST /v1/images/generations`
and `GET /files/{key}` for the local store."""
