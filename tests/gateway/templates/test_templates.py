"""Templates on SQLite and PostgreSQL: versions, labels, rollback, fallback levels 0-3,
TEMPLATE_NOT_FOUND, cache_hit, YAML import/export."""

from __future__ import annotations

from pathlib import Path

import pytest

from pureinfer.db import open_store
from pureinfer.db.models import TemplateVersion
from pureinfer.errors import TemplateNotFound
from pureinfer.gateway.templates.protocol import (
    SelectionKey,
    TemplateFields,
    TemplateOut,
    TemplateUpdate,
    TemplateView,
)
from pureinfer.gateway.templates.service import export_yaml, import_yaml
from tests.support.gateway import ADMIN, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")

STARTER = Path(__file__).parents[3] / "src/pureinfer/gateway/starter_templates.yaml"


def key(**kw: str) -> SelectionKey:
    base = dict(target_model="sdxl", enhancer_model="qwen_instruct", job_type="image", use_case="enhancement",
                content_mode="sfw")
    return SelectionKey(**(base | kw))


async def test_versions_labels_and_rollback(database_url, make_gateway):
    app, c = await make_gateway(database_url, background=False)
    svc = app.state.gateway.templates
    r = await c.post("/templates", json=tpl(system_prompt="v1 prompt"), headers=ADMIN)
    assert r.status_code == 201, r.text
    fam = r.json()
    assert fam["served_version"] == 1 and fam["labels"] == {"latest": 1}
    tid = fam["versions"][0]["id"]

    # An update is a new version; v1 is untouched.
    r = await c.put("/templates/sdxl_instruct_sfw", json={"system_prompt": "v2 prompt"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    fam = r.json()
    assert [v["version"] for v in fam["versions"]] == [1, 2]
    assert fam["versions"][0]["system_prompt"] == "v1 prompt"
    assert fam["versions"][1]["system_prompt"] == "v2 prompt"
    assert fam["versions"][1]["token_limit"] == 75  # carried over from v1
    assert fam["labels"] == {"latest": 2} and fam["served_version"] == 2
    assert (await svc.select(key())).template.version == 2

    # Pin production to v2, write v3: selection keeps serving production.
    r = await c.post(f"/templates/{tid}/labels", json={"label": "production", "version": 2}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["labels"]["production"] == 2
    await c.put("/templates/sdxl_instruct_sfw", json={"system_prompt": "v3 prompt", "token_limit": 60}, headers=ADMIN)
    sel = await svc.select(key())
    assert (sel.template.version, sel.template.system_prompt) == (2, "v2 prompt")

    # Rollback: move production back to v1.
    r = await c.post("/templates/sdxl_instruct_sfw/labels", json={"label": "production", "version": 1}, headers=ADMIN)
    assert r.json()["labels"] == {"latest": 3, "production": 1}
    sel = await svc.select(key())
    assert (sel.template.version, sel.template.system_prompt, sel.cache_hit) == (1, "v1 prompt", False)
    assert (await svc.select(key())).cache_hit is True

    # Custom label, a label on a missing version, get by name and by id, filters.
    r = await c.post("/templates/sdxl_instruct_sfw/labels", json={"label": "staging", "version": 3}, headers=ADMIN)
    assert r.json()["labels"]["staging"] == 3
    r = await c.post("/templates/sdxl_instruct_sfw/labels", json={"label": "staging", "version": 9}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert (await c.get(f"/templates/{tid}", headers=ADMIN)).json()["template_name"] == "sdxl_instruct_sfw"
    assert (await c.get("/templates/nope", headers=ADMIN)).json()["error_code"] == "NOT_FOUND"
    await c.post("/templates", json=tpl(template_name="wan_one", target_model="wan", job_type="video"), headers=ADMIN)
    names = [f["template_name"] for f in (await c.get("/templates?target_model=wan", headers=ADMIN)).json()]
    assert names == ["wan_one"]

    # Creating an existing name is refused (PUT adds versions).
    r = await c.post("/templates", json=tpl(), headers=ADMIN)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "template_name"

    # Deactivate: the family is no longer served.
    r = await c.delete("/templates/sdxl_instruct_sfw", headers=ADMIN)
    assert all(not v["is_active"] for v in r.json()["versions"]) and r.json()["served_version"] is None
    with pytest.raises(TemplateNotFound):
        await svc.select(key())


async def test_admin_api_needs_admin_key(sqlite_url, make_gateway):
    _, c = await make_gateway(sqlite_url, background=False)
    assert (await c.get("/templates")).json()["error_code"] == "UNAUTHORIZED"
    r = await c.post("/templates", json=tpl(), headers={"Authorization": "Bearer caller-key"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"
    r = await c.post("/templates", json=tpl(content_mode="maybe", token_limit=0), headers=ADMIN)
    assert r.status_code == 400
    fields = {f["field"] for f in r.json()["details"]["fields"]}
    assert fields == {"content_mode", "token_limit"}


async def test_fallback_levels_and_not_found(database_url, make_gateway):
    app, c = await make_gateway(database_url, background=False, default_template="generic_default")
    svc = app.state.gateway.templates
    for body in [
        tpl(template_name="exact"),
        tpl(template_name="base_model", enhancer_model="qwen_base"),
        tpl(template_name="video_sfw", target_model="wan", job_type="video", enhancer_model="qwen_base"),
        tpl(template_name="generic_default", target_model="any", job_type="any"),
    ]:
        assert (await c.post("/templates", json=body, headers=ADMIN)).status_code == 201

    # Level 0: exact match.
    sel = await svc.select(key())
    assert (sel.template.template_name, sel.fallback_level) == ("exact", 0)
    # Level 1: another enhancer model (qwen_base asked, only... both exist -> exact again).
    sel = await svc.select(key(enhancer_model="qwen_base"))
    assert (sel.template.template_name, sel.fallback_level) == ("base_model", 0)
    sel = await svc.select(key(enhancer_model="qwen_large"))
    assert sel.fallback_level == 1 and sel.template.template_name in ("exact", "base_model")
    # Level 2: the other content mode (nsfw request, only sfw templates).
    sel = await svc.select(key(target_model="wan", job_type="video", content_mode="nsfw"))
    assert (sel.template.template_name, sel.fallback_level) == ("video_sfw", 2)
    # An sfw request never falls back to an nsfw template: it goes to level 3 instead.
    await c.post("/templates", json=tpl(template_name="flux_nsfw", target_model="flux", content_mode="nsfw"),
                 headers=ADMIN)
    sel = await svc.select(key(target_model="flux"))
    assert (sel.template.template_name, sel.fallback_level) == ("generic_default", 3)
    # Level 3: the configured default.
    sel = await svc.select(key(target_model="unknown_model"))
    assert (sel.template.template_name, sel.fallback_level) == ("generic_default", 3)

    # Nothing anywhere: TEMPLATE_NOT_FOUND listing what was tried (here via the public endpoint).
    await c.delete("/templates/generic_default", headers=ADMIN)
    r = await c.post("/enhance-prompt", json={"prompt": "a cat", "target_model": "unknown_model"},
                     headers={"Authorization": "Bearer caller-key"})
    assert r.status_code == 404
    body = r.json()
    assert body["error_code"] == "TEMPLATE_NOT_FOUND" and body["success"] is False
    tried = body["details"]["tried"]
    assert [t["level"] for t in tried] == [0, 1, 2, 3]
    assert tried[0]["target_model"] == "unknown_model" and tried[0]["enhancer_model"] == "qwen_instruct"
    assert tried[1]["enhancer_model"] == {"not": "qwen_instruct"}
    assert "skipped" in tried[2]  # sfw -> nsfw is not tried
    assert tried[3]["template_name"] == "generic_default"


async def test_nsfw_fallback_when_enabled(sqlite_url, make_gateway):
    app, c = await make_gateway(sqlite_url, background=False, allow_nsfw_fallback=True)
    await c.post("/templates", json=tpl(template_name="n", content_mode="nsfw"), headers=ADMIN)
    sel = await app.state.gateway.templates.select(key())
    assert (sel.template.template_name, sel.fallback_level) == ("n", 2)


async def test_yaml_import_export_round_trip(database_url, tmp_path):
    store = open_store(database_url)
    try:
        counts = import_yaml(store, STARTER.read_text())
        assert counts["created"] >= 4 and counts["new_versions"] == 0
        assert import_yaml(store, STARTER.read_text()) == {"created": 0, "new_versions": 0,
                                                           "unchanged": counts["created"]}
        text = export_yaml(store)
        edited = text.replace("token_limit: 75", "token_limit: 70", 1)
        assert import_yaml(store, edited)["new_versions"] == 1
        everything = export_yaml(store, all_versions=True)
        assert everything.count("template_name:") == counts["created"] + 1
        other = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
        import_yaml(other, everything)
        assert export_yaml(other, all_versions=True) == everything
        other.dispose()
        with pytest.raises(ValueError, match="template #1"):
            import_yaml(store, "templates:\n  - template_name: x\n")
    finally:
        store.dispose()


async def test_template_fields_are_written_once():
    """Every model derives its content fields from TemplateFields, and the SQL row has a column
    for each; an update takes each of them as optional with the same constraints."""
    content = set(TemplateFields.model_fields)
    assert content <= set(TemplateOut.model_fields) and content <= set(TemplateView.model_fields)
    assert set(TemplateUpdate.model_fields) == content | {"labels"}
    assert content <= set(TemplateVersion.__table__.columns.keys())
    assert TemplateUpdate().model_dump(exclude_none=True) == {"labels": []}
    for field, bad in (("token_limit", 0), ("content_mode", "maybe"), ("system_prompt", ""), ("job_type", "x" * 51)):
        with pytest.raises(ValueError, match=field):
            TemplateUpdate.model_validate({field: bad})


async def test_update_is_validated_like_create(sqlite_url, make_gateway):
    _, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    r = await c.put("/templates/sdxl_instruct_sfw", json={"token_limit": 0, "content_mode": "x", "nope": 1},
                    headers=ADMIN)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert {f["field"] for f in r.json()["details"]["fields"]} == {"token_limit", "content_mode", "nope"}
