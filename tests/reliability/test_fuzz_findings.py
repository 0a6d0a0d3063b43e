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


async def test_jobs_offset_past_64_bits_is_a_coded_400(sqlite_url, make_gateway) -> None:
    """GET /jobs?offset= past a signed 64-bit integer reached the database driver, which raised
    OverflowError: a 500 (found by the fuzzer's 2,000-request gateway run). /audit had the same
    defect earlier; every integer query parameter is now bounded."""
    _, c = await make_gateway(sqlite_url, background=False)
    r = await c.get("/jobs", params={"offset": str(2**70)}, headers=ADMIN)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PAYLOAD"
    assert [f["field"] for f in r.json()["details"]["fields"]] == ["query.offset"]
    r = await c.get("/jobs", params={"offset": str(2**63 - 1)}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["jobs"] == []
