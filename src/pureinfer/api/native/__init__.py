"""The native surface: WORKER_API.md's text API (`POST /chat`, `/enhance`, `/generate` with `messages`
or a raw `prompt`), JSON or Server-Sent Events."""
