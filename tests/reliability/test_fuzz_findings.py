"""Regressions for what the fuzzer found (tests/support/fuzz.py, scripts/fuzz.py)."""

from __future__ import annotations

from tests.support.gateway import ADMIN, tpl


async def test_template_update_with_null_fields_is_not_a_500(sqlite_url, make_gateway) -> None:
    """PUT /templates/{ref} with a field set to null: the optional update model kept the NUL check
    of the text fields on `str | None`, which raised TypeError on None (found by the fuzzer)."""
    _, c = await make_gateway(sqlite_url, background=False)
    assert (await c.post("/templates", json=tpl(), headers=ADMIN)).status_code == 201
    name = tpl()["template_name"]
    r = await c.put(f"/templates/{name}", json={"system_prompt": None, "enhancer_model": None}, headers=ADMIN)
    assert r.status_code < 500, r.text
    r = await c.put(f"/templates/{name}", json={"system_prompt": "new\x00prompt"}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert r.json()["details"]["fields"][0]["field"] == "system_prompt"
    r = await c.put(f"/templates/{name}", json={"system_prompt": "a new prompt"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["versions"][-1]["system_prompt"] == "a new prompt"
