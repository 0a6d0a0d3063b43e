"""The public endpoints: `POST /enhance-prompt` and `POST /chat` (the playground)."""
