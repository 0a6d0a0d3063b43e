"""The native surface: the seed's text API (`POST /chat`, `/enhance`, `/generate` with `messages`
or a raw `prompt`), JSON or Server-Sent Events."""
