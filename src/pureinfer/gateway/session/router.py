"""`/session`: sign in with an admin key once, then the JSON API accepts the session cookie
(with `X-CSRF-Token` on state-changing requests) wherever it accepts an admin key."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from pureinfer.errors import Unauthorized
from pureinfer.gateway.auth import CSRF_HEADER, SESSION_COOKIE, GatewayAuth, Session
from pureinfer.gateway.session.protocol import SessionOut, SignIn

router = APIRouter(prefix="/session", tags=["session"])


def _auth(request: Request) -> GatewayAuth:
    return request.app.state.gateway.auth


def _out(session: Session) -> SessionOut:
    return SessionOut(csrf_token=session.csrf_token, key_id=session.key_id,
                      expires_at=datetime.fromtimestamp(session.expires_at, UTC))


def _live(request: Request) -> Session:
    session = _auth(request).session(request)  # CSRF checked here for DELETE
    if session is None:
        raise Unauthorized("No session: sign in with POST /session", {"cookie": SESSION_COOKIE})
    return session


@router.post("", response_model=SessionOut)
async def sign_in(request: Request, body: SignIn, response: Response) -> SessionOut:
    token, session = _auth(request).sign_in(body.admin_key)
    # HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it; Secure on https.
    response.set_cookie(SESSION_COOKIE, token, max_age=int(_auth(request).sessions.ttl_s), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return _out(session)


@router.get("", response_model=SessionOut)
async def current(request: Request, response: Response) -> SessionOut:
    response.headers["Cache-Control"] = "no-store"
    return _out(_live(request))


@router.delete("", status_code=204, description=f"sign out; needs {CSRF_HEADER}")
async def sign_out(request: Request) -> Response:
    _live(request)
    _auth(request).sessions.drop(request.cookies.get(SESSION_COOKIE))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
