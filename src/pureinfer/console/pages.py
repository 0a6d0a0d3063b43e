"""The console's pages: one HTML route per page, the login page, and the static files.

Each page is a shell: the server renders the navigation, the labelled forms and the session's
CSRF token (a `<meta>`); the page's script module fills it from the JSON API. Every response
carries a Content-Security-Policy that allows scripts, styles and connections from this origin
only (no inline script, no `eval`), and Jinja2 escapes everything it renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pureinfer.gateway.auth import SESSION_COOKIE

HERE = Path(__file__).parent
PREFIX = "/ui"

# Images come from this origin (the gateway passes worker files through) and as data:/blob: URLs
# (downloads); nothing else is loaded from anywhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# (path, title, script): the pages in navigation order.
PAGES = [
    ("playground", "Playground", "playground.js"),
    ("templates", "Templates", "templates.js"),
    ("workers", "Workers", "workers.js"),
    ("jobs", "Jobs & audit", "jobs.js"),
    ("monitoring", "Monitoring", "monitoring.js"),
]

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


class ConsoleStatic(StaticFiles):
    """Static files with the same security headers (a module script must not be sniffed as HTML)."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def _render(name: str, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(prefix=PREFIX, pages=PAGES, **context)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


def attach_console(app: FastAPI) -> None:
    """Add the console's routes (left out of the OpenAPI document: they are pages, not API)."""

    app.mount(f"{PREFIX}/static", ConsoleStatic(directory=HERE / "static"), name="console-static")

    @app.get(PREFIX, include_in_schema=False)
    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/playground", status_code=303)

    @app.get(f"{PREFIX}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        return _render("login.html", title="Sign in", script="login.js", next=_safe_next(request.query_params.get("next")))

    def page(path: str, title: str, script: str) -> None:
        async def show(request: Request) -> Response:
            session = request.app.state.gateway.auth.sessions.get(request.cookies.get(SESSION_COOKIE))
            if session is None:
                return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)
            return _render(f"{path}.html", title=title, current=path, script=script, csrf_token=session.csrf_token,
                           key_id=session.key_id or "open gateway")

        app.add_api_route(f"{PREFIX}/{path}", show, methods=["GET"], include_in_schema=False, name=f"console-{path}")

    for path, title, script in PAGES:
        page(path, title, script)


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: only a page of the console (never another site)."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/playground"
