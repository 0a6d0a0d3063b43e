"""Browser sessions: `POST /session` (an admin key for an HttpOnly cookie and a CSRF token),
`GET /session`, `DELETE /session`. The rules are in `gateway/auth.py`."""
