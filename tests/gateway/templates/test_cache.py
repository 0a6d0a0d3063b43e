"""The template cache across two gateway apps sharing one database: concurrent updates from
both, every selection on either app sees at least every change committed before it started."""

from __future__ import annotations

import asyncio

import pytest

from pureinfer.gateway.templates.protocol import SelectionKey
from tests.support.gateway import ADMIN, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")
KEY = SelectionKey("sdxl", "qwen_instruct", "image", "enhancement", "sfw")


async def test_cache_invalidation_under_concurrent_updates(database_url, make_gateway):
    app_a, a = await make_gateway(database_url, background=False)
    app_b, b = await make_gateway(database_url, background=False)
    sel_a, sel_b = app_a.state.gateway.templates, app_b.state.gateway.templates
    assert (await a.post("/templates", json=tpl(system_prompt="p1"), headers=ADMIN)).status_code == 201
    assert (await sel_a.select(KEY)).template.version == 1
    assert (await sel_b.select(KEY)).template.version == 1
    assert (await sel_b.select(KEY)).cache_hit is True

    stale: list[tuple[int, int]] = []
    stop = asyncio.Event()

    async def writer(client, selector_other, n: int, tag: str) -> None:
        for i in range(n):
            r = await client.put("/templates/sdxl_instruct_sfw", json={"system_prompt": f"{tag}{i}"}, headers=ADMIN)
            assert r.status_code == 200, r.text
            written = max(v["version"] for v in r.json()["versions"])
            seen = (await selector_other.select(KEY)).template.version  # the *other* process
            if seen < written:
                stale.append((written, seen))

    async def reader(selector) -> int:
        count, last = 0, 0
        while not stop.is_set():
            v = (await selector.select(KEY)).template.version
            assert v >= last, "a process went back to an older version"
            last, count = v, count + 1
            await asyncio.sleep(0)
        return count

    readers = [asyncio.create_task(reader(sel_a)), asyncio.create_task(reader(sel_b))]
    await asyncio.gather(writer(a, sel_b, 8, "a"), writer(b, sel_a, 8, "b"))
    stop.set()
    reads = await asyncio.gather(*readers)
    assert stale == []
    assert min(reads) > 5

    fam = (await a.get("/templates/sdxl_instruct_sfw", headers=ADMIN)).json()
    assert [v["version"] for v in fam["versions"]] == list(range(1, 18))  # no version lost or doubled
    final = await sel_a.select(KEY), await sel_b.select(KEY)
    assert {s.template.version for s in final} == {17}
    assert {s.template.system_prompt for s in final} == {fam["versions"][-1]["system_prompt"]}

    # A label move on B (rollback) is seen by A on its next selection, and A's cache then hits.
    await b.post("/templates/sdxl_instruct_sfw/labels", json={"label": "production", "version": 3}, headers=ADMIN)
    s1 = await sel_a.select(KEY)
    s2 = await sel_a.select(KEY)
    assert (s1.template.version, s1.cache_hit, s2.cache_hit) == (3, False, True)


async def test_selection_memo_is_bounded(sqlite_url, make_gateway):
    """The memo is keyed by caller-supplied strings: an LRU of MEMO_SIZE keys, not one entry per
    string a caller ever sent."""
    from pureinfer.gateway.templates.service import MEMO_SIZE

    app, c = await make_gateway(sqlite_url, background=False)
    svc = app.state.gateway.templates
    await c.post("/templates", json=tpl(), headers=ADMIN)
    first = await svc.select(KEY)
    for i in range(MEMO_SIZE + 100):  # another enhancer model each time: fallback level 1
        sel = await svc.select(SelectionKey("sdxl", f"model-{i}", "image", "enhancement", "sfw"))
        assert sel.fallback_level == 1 and sel.template == first.template
    memo = svc._snapshot.memo
    assert len(memo) == MEMO_SIZE and KEY not in memo  # the oldest went first

    def k(name: str) -> SelectionKey:
        return SelectionKey("sdxl", name, "image", "enhancement", "sfw")
    oldest, next_oldest = k("model-100"), k("model-101")
    assert next(iter(memo)) == oldest
    await svc.select(oldest)  # a hit makes it the newest...
    await svc.select(k("one more"))
    assert oldest in memo and next_oldest not in memo and len(memo) == MEMO_SIZE  # ...so the next one went
