"""The web console at `/ui`: server-rendered pages (Jinja2) with small JavaScript modules that
call the gateway's own JSON API, signed in by the session cookie (`gateway/auth.py`).

`attach_console(app)` adds the pages and their static files to a gateway app; the gateway never
imports this package (it sits below it in the layout), so `pureinfer serve` and `pureinfer
gateway` attach it when they compose the app. The console owns no data and no JSON route.
"""

from pureinfer.console.pages import attach_console

__all__ = ["attach_console"]
