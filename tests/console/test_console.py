"""The console's flows in a real browser: sign-in, templates (create, edit, diff, rollback),
the streamed playground chat, the audit log, workers, monitoring, escaping, CSRF, labels, and a
screenshot of every page at 1280 and 390 px."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import NARROW, SCREENSHOTS, WIDE, QueueGateway, sign_in
from tests.support.serve import Served

PAGES = ["playground", "templates", "workers", "jobs", "monitoring"]


def test_sign_in_keeps_only_an_httponly_cookie(browser, served: Served) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.goto(f"{served.url}/ui/templates")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/templates$"))
    page.get_by_label("Admin key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_contain_text("UNAUTHORIZED")
    page.get_by_label("Admin key").fill(served.admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{served.url}/ui/templates")
    [cookie] = context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("pureinfer_session", True, "Strict")
    assert page.evaluate("() => [document.cookie, localStorage.length, sessionStorage.length]") == ["", 0, 0]
    # The page's modules have run (they drew the list), so Sign out has its handler: a click before
    # that did nothing and the URL never changed (seen once on a loaded machine).
    expect(page.get_by_role("button", name="Open template playground_chat_sfw")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto(f"{served.url}/ui/workers")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/workers$"))
    context.close()


def test_templates_create_edit_diff_and_roll_back(page: Page, served: Served) -> None:
    name = f"console_{uuid.uuid4().hex[:8]}"
    page.goto(f"{served.url}/ui/templates")
    page.get_by_role("button", name="New template").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Target model", exact=True).last.fill("story")
    page.get_by_label("Job type", exact=True).last.fill("text")
    page.get_by_label("Labels (comma-separated)").fill("production")
    page.get_by_label("System prompt").fill("You write one-line story ideas.\nKeep it short.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#detail-h")).to_have_text(name)
    expect(page.locator("#status")).to_contain_text(f"Created {name}")

    page.get_by_role("button", name="Edit (new version)").click()
    page.get_by_label("System prompt").fill("You write one-line story ideas.\nKeep it under ten words.")
    page.get_by_label("Labels (comma-separated)").fill("production")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_contain_text(f"Saved {name} v2")
    versions = page.locator("#version-table tbody tr")
    expect(versions).to_have_count(2)
    expect(versions.first).to_contain_text("production")  # newest first: v2 holds the label

    page.get_by_label("Compare version").select_option("1")
    page.get_by_label("with version").select_option("2")
    page.get_by_role("button", name="Show diff").click()
    changed = page.locator(".diff-table tr.changed")
    expect(changed).to_have_count(1)
    expect(changed.locator("td.old")).to_have_text("Keep it short.")
    expect(changed.locator("td.new")).to_have_text("Keep it under ten words.")
    page.screenshot(path=str(SCREENSHOTS / "templates-diff-1280.png"), full_page=True)

    page.get_by_label("Label", exact=True).fill("production")
    page.locator("#l-version").select_option("1")
    page.get_by_role("button", name="Move label").click()
    expect(page.locator("#status")).to_contain_text(f"production now points at v1; {name} serves v1")
    row = page.locator("#template-table tbody tr", has=page.get_by_role("button", name=f"Open template {name}"))
    expect(row).to_contain_text("production → v1")


def _chat(page: Page, served: Served, message: str) -> str:
    """Send `message` in the playground (seeded); the request id of the streamed answer."""
    page.goto(f"{served.url}/ui/playground")
    expect(page.locator("#chat-template option")).not_to_have_count(1)
    page.get_by_label("Template").select_option("playground_chat_sfw")
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Seed").first.fill("7")
    page.get_by_label("Message", exact=True).fill(message)
    with page.expect_response(lambda r: r.url.endswith("/chat") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Send").click()
    response = answer.value
    assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
    expect(page.locator("#status")).to_contain_text("Done: 12 tokens")
    return response.headers["x-request-id"]


def test_playground_streams_a_chat_and_shows_its_proof(page: Page, served: Served) -> None:
    rid = _chat(page, served, "A lighthouse at dusk")
    expect(page.locator("#chat-log li.assistant p")).not_to_have_text("")
    meta = page.locator("#chat-meta")
    expect(meta).to_contain_text("playground_chat_sfw v1")
    expect(meta).to_contain_text(rid)
    page.locator("#chat-details summary").click()
    sha = meta.locator("dt:text-is('prompt_sha256') + dd")
    expect(sha).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    expect(meta.locator("dt:text-is('fallback level') + dd")).to_have_text("0")
    expect(meta.locator("dt:text-is('prompt tokens') + dd")).to_have_text(re.compile(r"^\d+$"))
    expect(meta.locator("dt:text-is('seed') + dd")).to_have_text("7")
    expect(page.locator("#chat-messages")).to_contain_text("You are a helpful assistant")
    expect(page.locator("#chat-messages")).to_contain_text("A lighthouse at dusk")
    page.screenshot(path=str(SCREENSHOTS / "playground-chat-1280.png"), full_page=True)


def _wait_for_audit(served: Served, rid: str) -> None:
    """The audit writer batches its rows; wait (a condition, generous deadline) until it is there."""
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {served.admin_key}"}
    while not httpx.get(f"{served.url}/audit", params={"request_id": rid}, headers=headers,
                        trust_env=False).json()["count"]:
        assert time.monotonic() < deadline, f"no audit row for {rid}"
        time.sleep(0.1)


def test_a_script_in_a_prompt_shows_as_text_and_the_audit_finds_it(page: Page, served: Served) -> None:
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    rid = _chat(page, served, evil)
    expect(page.locator("#chat-log li.user p")).to_have_text(evil)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#chat-log img").count() == 0

    _wait_for_audit(served, rid)
    page.goto(f"{served.url}/ui/jobs")
    page.get_by_label("Request id").fill(rid)
    page.get_by_label("Endpoint").fill("chat")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(evil[:40])
    rows.first.get_by_role("button", name=f"Details of request {rid}").click()
    expect(page.locator("#audit-detail-h")).to_have_text(f"Request {rid}")
    expect(page.locator("#audit-fields")).to_contain_text("playground_chat_sfw")
    assert page.evaluate("() => window.__pwned") is None


def test_a_state_change_without_the_csrf_token_is_refused(page: Page) -> None:
    body = {"template_name": "csrf_probe", "enhancer_model": "q", "target_model": "t", "job_type": "j",
            "use_case": "u", "content_mode": "sfw", "system_prompt": "s", "token_limit": 5}
    refused = page.evaluate("""async (body) => {
        const r = await fetch('/templates', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                             body: JSON.stringify(body)});
        return [r.status, (await r.json()).error_code];
    }""", body)
    assert refused == [403, "CSRF_TOKEN_INVALID"]
    accepted = page.evaluate("""async (body) => {
        const token = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/templates', {method: 'POST', body: JSON.stringify(body),
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token}});
        return r.status;
    }""", body)
    assert accepted == 201


def test_an_enhanced_prompt_becomes_an_image_with_its_seed_in_the_gallery(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/ui/playground")
    page.get_by_label("Image idea").fill("a red fox in the snow")
    # seeded: the demo model's (random) words for this seed make a prompt the image route takes
    page.get_by_label("Enhance seed").fill("1")
    page.get_by_role("button", name="Enhance").click()
    expect(page.locator("#enhanced-text")).not_to_be_empty()
    expect(page.locator("#enhance-strategy")).to_contain_text("sdxl_enhance_instruct_sfw")
    page.locator("#image-seed").fill("42")
    page.locator("#image-steps").fill("2")
    with page.expect_response(lambda r: r.url.endswith("/jobs") and r.request.method == "POST") as submitted:
        page.get_by_role("button", name="Generate an image from it").click()
    assert submitted.value.status == 202  # an image job, whose progress the form follows
    job_id = submitted.value.json()["job_id"]
    item = page.locator("#gallery li[data-seed='42']")
    expect(item).to_have_count(1)
    expect(page.locator("#image-progress-text")).to_have_text("done")
    expect(page.locator("#image-progress-bar")).to_have_js_property("value", 1)
    # The console's jobs are the admin's (its session): a caller key does not see them, an admin key does.
    assert httpx.get(f"{served.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {served.api_key}"},
                     trust_env=False).status_code == 404
    job = httpx.get(f"{served.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {served.admin_key}"},
                    trust_env=False).json()
    assert job["status"] == "succeeded" and job["progress"] == {"step": 2, "total": 2}
    assert [i["seed"] for i in job["result"]["images"]] == [42]
    expect(item.locator(".seed")).to_contain_text("seed 42 · 64×64 · 2 steps")
    expect(item.get_by_role("link", name="Download PNG")).to_have_attribute("href", re.compile(r"^data:image/png;base64,"))
    assert item.locator("img").evaluate("img => img.complete && img.naturalWidth") == 64

    # "reuse seed" puts the seed and prompt back; the same seed draws the same pixels
    page.locator("#image-seed").fill("")
    item.get_by_role("button", name="Reuse seed").click()
    expect(page.locator("#image-seed")).to_have_value("42")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#gallery li[data-seed='42']")).to_have_count(2)
    srcs = page.locator("#gallery li[data-seed='42'] img").evaluate_all("imgs => imgs.map(i => i.src)")
    assert srcs[0] == srcs[1]
    page.screenshot(path=str(SCREENSHOTS / "playground-gallery-1280.png"), full_page=True)


@pytest.mark.redis
def test_a_job_is_cancelled_from_the_jobs_page(browser, queue_gateway: QueueGateway) -> None:  # type: ignore[no-untyped-def]
    caller = {"Authorization": f"Bearer {queue_gateway.api_key}"}
    job = httpx.post(f"{queue_gateway.url}/jobs", headers=caller, trust_env=False, json={
        "type": "text", "params": {"message": "Tell a story", "max_tokens": 16}}).json()
    assert job.get("status") == "queued", job
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    sign_in(page, queue_gateway)
    page.goto(f"{queue_gateway.url}/ui/jobs")
    row = page.locator(f"#job-table tr[data-job='{job['job_id']}']")
    expect(row.locator(".pill")).to_have_text("queued")
    row.get_by_role("button", name=f"Cancel job {job['job_id']}").click()
    expect(page.locator("#status")).to_have_text(f"Job {job['job_id']} cancelled")
    expect(row.locator(".pill")).to_have_text("cancelled")
    expect(row.get_by_role("button")).to_have_count(0)  # nothing left to cancel
    context.close()


def test_the_keyboard_alone_reaches_and_opens_a_template(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/ui/templates")
    target = page.get_by_role("button", name="Open template playground_chat_sfw")
    expect(target).to_be_visible()
    for _ in range(80):  # Tab through the page until the template's button has the focus
        if target.evaluate("b => b === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the template's button")
    page.keyboard.press("Enter")
    expect(page.locator("#detail-h")).to_have_text("playground_chat_sfw")
    page.keyboard.press("Shift+Tab")  # focus moves on from where it was; nothing traps it
    assert page.evaluate("() => document.activeElement !== document.body")


def test_workers_show_the_registry_and_add_and_remove(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/ui/workers")
    rows = page.locator("#worker-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#worker-table .pill.ok")).to_have_count(2)
    chat_url = rows.filter(has_text="chat").first.locator("th span").inner_text()
    alias = chat_url.replace("127.0.0.1", "localhost")
    page.get_by_label("URL").fill(alias)
    page.get_by_label("Models (comma-separated)").fill("qwen_instruct")
    page.get_by_role("button", name="Add").click()
    expect(rows).to_have_count(3)
    page.get_by_role("button", name=f"Remove worker {alias}").click()
    expect(rows).to_have_count(2)


def test_monitoring_draws_its_charts(page: Page, served: Served) -> None:
    _chat(page, served, "monitoring")
    page.goto(f"{served.url}/ui/monitoring")
    expect(page.locator(".chart svg")).to_have_count(5)
    expect(page.locator("#mon-totals")).to_contain_text("requests")


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280", "390"])
def test_every_page_is_labelled_fits_and_is_screenshotted(browser, served: Served, viewport) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.goto(f"{served.url}/ui/login")
    page.screenshot(path=str(SCREENSHOTS / f"login-{viewport['width']}.png"), full_page=True)
    sign_in(page, served)
    for name in PAGES:
        page.goto(f"{served.url}/ui/{name}")
        expect(page.locator("#status")).not_to_be_empty()  # the page's script ran and loaded its data
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML)""")
        assert unlabelled == [], f"{name}: controls without a label: {unlabelled}"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{viewport['width']}.png"), full_page=True)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll'))
            .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)""")
        assert overflow <= 0, f"{name} is {overflow} px wider than the {viewport['width']} px window: {wide}"
    context.close()
