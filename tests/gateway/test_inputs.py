"""The classes of input a schemathesis run found 500s with (issue 9, defect 11), tried on every
gateway route that takes them: non-ASCII digits, integers past 64 bits, NUL and other control
characters in path, query and body values, deep JSON. Every answer is a coded 4xx envelope; none
is a 500, on SQLite or PostgreSQL."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")

HUGE = 2**70
STRINGS = ["¹", "٣", str(HUGE), "-1", "a\x00b", "\x00", "x" * 300, "😀", " ", "a/b", ".."]


def requests() -> list[tuple[str, str, dict | None]]:
    """(method, path with query, JSON body) to try."""
    out: list[tuple[str, str, dict | None]] = []
    names = (f"t{i}" for i in range(10_000))  # a new template each time: the insert itself is tried
    for s in STRINGS:
        q = quote(s, safe="")
        out += [("GET", f"/templates/{q}", None), ("DELETE", f"/templates/{q}", None),
                ("PUT", f"/templates/{q}", {"token_limit": 5}),
                ("POST", f"/templates/{q}/labels", {"label": "x", "version": 1}),
                ("DELETE", f"/workers/{q}", None), ("POST", f"/workers/{q}/heartbeat", None)]
        for param in ("request_id", "endpoint", "error_code", "template_name", "worker_id", "caller_key_id",
                      "status", "limit", "offset", "since", "until"):
            out.append(("GET", f"/audit?{param}={q}", None))
        for param in ("template_name", "target_model", "content_mode", "include_inactive"):
            out.append(("GET", f"/templates?{param}={q}", None))
        out += [("POST", "/templates", tpl(template_name=next(names), system_prompt=s)),
                ("POST", "/templates", tpl(template_name=next(names), enhancer_model=s[:100] or "m")),
                ("POST", "/templates", tpl(template_name=next(names), labels=[s])),
                ("POST", "/templates", tpl(template_name=next(names), metadata={"k": s, s: 1})),
                ("POST", "/workers", {"url": f"http://127.0.0.1:1/{s}", "models": [s]}),
                ("POST", "/enhance-prompt", {"prompt": "p", "target_model": s[:100] or "m"}),
                ("POST", "/chat", {"message": s})]
    for n in (HUGE, -HUGE, 2**63, 2**31, -1, 0):
        out += [("POST", "/enhance-prompt", {"prompt": "p", "seed": n}), ("POST", "/chat", {"message": "m", "seed": n}),
                ("POST", "/chat", {"message": "m", "max_tokens": n}),
                ("POST", "/templates/sdxl_instruct_sfw/labels", {"label": "x", "version": n}),
                ("POST", "/templates", tpl(template_name=next(names), token_limit=n)),
                ("GET", f"/audit?offset={n}", None), ("GET", f"/audit?limit={n}", None),
                ("GET", f"/audit?status={n}", None)]
    for dt in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01", "9999-12-31T23:59:59",
               "1e400", "nan"):
        out += [("GET", f"/audit?since={quote(dt)}", None), ("GET", f"/audit?until={quote(dt)}", None)]
    for x in ("NaN", "Infinity", "-Infinity", "1e400"):
        out.append(("RAW", "/chat", {"raw": f'{{"message": "m", "temperature": {x}, "top_p": {x}}}'}))
    deep = "[" * 100_000 + "]" * 100_000
    out += [("RAW", "/chat", {"raw": deep}), ("RAW", "/templates", {"raw": '{"metadata": ' + deep + "}"}),
            ("RAW", "/workers/register", {"raw": '{"url": "http://x", "info": ' + deep + "}"})]
    return out


async def test_no_input_makes_a_500(database_url, make_gateway):
    app, c = await make_gateway(database_url, background=False, insecure=True, registration_secret=None)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    headers = {**ADMIN}
    tried, wrong = 0, []
    for method, path, body in requests():
        where = f"{method} {path[:80]!r} {json.dumps(body)[:80] if body else ''}"
        try:
            if method == "RAW":
                r = await c.post(path, content=body["raw"], headers={**headers, "Content-Type": "application/json"})
            else:
                r = await c.request(method, path, json=body, headers=headers)
        except Exception as exc:  # the app raised: it would have been a 500
            wrong.append(f"{where}: raised {type(exc).__name__}: {str(exc)[:120]}")
            continue
        tried += 1
        if r.status_code >= 500 and r.json().get("error_code") != "WORKER_UNAVAILABLE":
            wrong.append(f"{where}: {r.status_code} {r.text[:200]}")
        elif r.status_code >= 400:
            data = r.json()
            if not (data["success"] is False and data["error_code"] and data["suggested_action"]):
                wrong.append(f"{where}: not an envelope: {r.text[:200]}")
    assert not wrong, "\n".join(wrong)
    assert tried > 300
    # Caller endpoints refuse the same classes with the caller key too.
    r = await c.post("/enhance-prompt", json={"prompt": "p", "seed": HUGE}, headers=CALLER)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "seed"
