"""The console in Debian's Chromium (Playwright, launched by its executable path: browser
downloads are not reachable), against `pureinfer serve --demo` as a real process.

Waiting is Playwright's: `expect(...)` retries until the page shows what is asserted (generous
timeouts for a loaded machine), never a sleep. Screenshots go to tests/console/screenshots/."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.serve import Served

CHROMIUM = os.environ.get("PUREINFER_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and pytest-asyncio's tests after this folder need the thread without one.
@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        # A failure, not a skip: the console's browser tests are part of the suite (.ci/run installs it).
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def sign_in(page, served: Served | QueueGateway) -> None:  # type: ignore[no-untyped-def]
    """Sign in by keyboard, as a person would."""
    from playwright.sync_api import expect

    page.goto(f"{served.url}/ui")
    expect(page).to_have_url(f"{served.url}/ui/login?next=/ui/playground")
    page.get_by_label("Admin key").fill(served.admin_key)
    page.get_by_label("Admin key").press("Enter")
    expect(page).to_have_url(f"{served.url}/ui/playground")


@pytest.fixture
def page(browser, served: Served) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=WIDE)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda dialog: dialog.accept())
    sign_in(pg, served)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@dataclass
class QueueGateway:
    """A gateway (in process, console attached) whose jobs go to Redis with no worker reading
    them: a job stays queued until it is cancelled, whatever the machine's speed."""

    url: str
    admin_key: str
    api_key: str


@pytest.fixture(scope="session")
def queue_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueGateway]:
    from pureinfer.console import attach_console
    from pureinfer.gateway.app import create_app
    from pureinfer.gateway.settings import GatewaySettings
    from tests.support.live import LiveServer

    settings = GatewaySettings(cache_dir=tmp_path_factory.mktemp("queue-gateway"), admin_keys=["qa-admin"],
                               api_keys=["qa-caller"], queue="redis://127.0.0.1:6379/0",
                               queue_prefix=f"console-test-{uuid.uuid4().hex[:8]}")
    app = create_app(settings)
    attach_console(app)
    import httpx

    with LiveServer(app) as live:
        chat_template = {"template_name": "queue_chat", "enhancer_model": "qwen_instruct", "target_model": "chat",
                         "job_type": "chat", "use_case": "chat", "content_mode": "sfw",
                         "system_prompt": "You are brief.", "token_limit": 64}
        r = httpx.post(f"{live.url}/templates", json=chat_template, trust_env=False,
                       headers={"Authorization": "Bearer qa-admin"})
        assert r.status_code == 201, r.text
        yield QueueGateway(live.url, "qa-admin", "qa-caller")
