"""SSE on the seed endpoints and the OpenAI surface, the official client, cancellation, overload,
the deadline. Uses a real uvicorn server so disconnects and concurrency are real."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pureinfer.worker.app import create_app
from tests.support.live import LiveServer
from tests.support.worker import make_settings, msgs

KEY = "stream-key"


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[LiveServer]:
    app = create_app(make_settings(cache_dir, api_keys=[KEY], max_running_requests=4, max_queued_requests=2))
    with LiveServer(app) as s:
        yield s


def _events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_sse_framing(server: LiveServer) -> None:
    body = {"messages": msgs(), "max_tokens": 8, "min_tokens": 8, "stream": True, "seed": 7, "temperature": 1}
    with httpx.stream("POST", server.url + "/chat", json=body, headers=_auth(), timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = _events(r.read().decode())
    assert data[-1] == "[DONE]"
    final = json.loads(data[-2])
    deltas = [json.loads(d) for d in data[:-2]]
    assert all(set(d) == {"text", "request_id"} for d in deltas)
    assert "".join(d["text"] for d in deltas) == final["response"]
    assert final["tokens_generated"] == 8 and final["finish_reason"] == "length"
    for key in ("generation_time", "prompt_tokens", "prompt_sha256", "model_used", "request_id"):
        assert key in final
    assert final["seed"] == 7
    # The same request without streaming gives the same text.
    plain = httpx.post(server.url + "/chat", json={**body, "stream": False}, headers=_auth(), timeout=60).json()
    assert plain["response"] == final["response"] and plain["prompt_sha256"] == final["prompt_sha256"]


def test_errors_before_streaming_are_plain_json(server: LiveServer) -> None:
    r = httpx.post(server.url + "/chat", json={"messages": msgs(), "max_tokens": 9999, "stream": True},
                   headers=_auth(), timeout=30)
    assert r.status_code == 400 and r.json()["error_code"] == "TOKEN_LIMIT_EXCEEDED"


def test_openai_client(server: LiveServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["qwen_instruct"]
    out = client.chat.completions.create(model="qwen_instruct", messages=msgs(), max_tokens=6, seed=3,
                                         temperature=0.8, stop=["\n\n\n\n"])
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"
    assert out.usage.completion_tokens <= 6 and out.usage.prompt_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    again = client.chat.completions.create(model="qwen_instruct", messages=msgs(), max_completion_tokens=6, seed=3,
                                           temperature=0.8, stop=["\n\n\n\n"])
    assert again.choices[0].message.content == out.choices[0].message.content
    stream = client.chat.completions.create(model="qwen_instruct", messages=msgs(), max_tokens=6, seed=3,
                                            temperature=0.8, stop=["\n\n\n\n"], stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.model_extra.get("seed") for c in chunks if c.choices and c.choices[0].finish_reason] == [3]
    assert text == out.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == out.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == out.usage.completion_tokens
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="qwen_instruct", messages=msgs(), max_tokens=5, n=2)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="bad", max_retries=0).models.list()


def _running(server: LiveServer) -> int:
    return httpx.get(server.url + "/status", headers=_auth()).json()["performance"]["requests_running"]


def test_dropped_streaming_clients_free_their_slots(server: LiveServer) -> None:
    async def drop_one() -> None:
        async with httpx.AsyncClient(timeout=60) as c:
            body = {"messages": msgs(), "max_tokens": 1500, "min_tokens": 1500, "stream": True}
            async with c.stream("POST", server.url + "/chat", json=body, headers=_auth()) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        return  # got a token: hang up mid-stream

    async def main() -> None:
        # 10 clients, in waves that fit the admission limits (4 running + 2 queued).
        for wave in (4, 4, 2):
            await asyncio.gather(*(drop_one() for _ in range(wave)))

    asyncio.run(main())
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
    while _running(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(server) == 0
    assert httpx.get(server.url + "/status", headers=_auth()).json()["performance"]["requests_in_flight"] == 0


def test_overload_is_503_with_retry_after(server: LiveServer) -> None:
    """Six requests fill the gate (4 running + 2 queued) and the seventh is refused at once with
    503 + Retry-After; the six then finish. The engine is held inside its first forward (a hook
    that waits) until the seventh has its answer, so none of the six can finish early and free a
    slot, however fast or slow the machine is."""
    runtime = server.app.state.runtime
    engine = next(iter(runtime.text.engines.values()))
    go = threading.Event()

    def hold(*_: object) -> None:  # a pre-hook's return value would replace the inputs
        go.wait()

    hook = engine.model.get_input_embeddings().register_forward_pre_hook(hold)

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as c:
            body = {"messages": msgs(), "max_tokens": 16}
            tasks = [asyncio.create_task(c.post(server.url + "/chat", json=body, headers=_auth())) for _ in range(6)]
            t0 = time.monotonic()
            while runtime.admission.in_flight < 6:  # all six admitted (a condition, not a sleep)
                assert time.monotonic() - t0 < 60 and not any(t.done() for t in tasks)
                await asyncio.sleep(0.01)
            extra = await c.post(server.url + "/chat", json=body, headers=_auth())
            go.set()
            done = await asyncio.gather(*tasks)
            return [extra, *done]

    try:
        extra, *done = asyncio.run(main())
    finally:
        go.set()
        hook.remove()
    assert extra.status_code == 503, extra.text
    assert extra.json()["error_code"] == "WORKER_OVERLOADED" and extra.headers["retry-after"] == "1"
    assert [r.status_code for r in done] == [200] * 6, [r.text for r in done]
    assert runtime.admission.in_flight == 0


def test_deadline_stops_generation(cache_dir: Path) -> None:
    app = create_app(make_settings(cache_dir, request_timeout_s=0.5))
    with LiveServer(app) as s:
        engine = next(iter(app.state.runtime.text.engines.values()))
        steps = engine.steps
        r = httpx.post(s.url + "/chat", json={"messages": msgs(), "max_tokens": 1900, "min_tokens": 1900}, timeout=60)
        assert r.status_code == 504 and r.json()["error_code"] == "WORKER_TIMEOUT"
        assert engine.steps - steps < 1900  # stopped at the deadline, not run to max_tokens
        assert httpx.get(s.url + "/status").json()["performance"]["requests_running"] == 0
        # Mid-stream, the timeout arrives as an SSE error event followed by [DONE].
        with httpx.stream("POST", s.url + "/chat", json={"messages": msgs(), "max_tokens": 1900, "min_tokens": 1900,
                                                         "stream": True}, timeout=30) as resp:
            data = _events(resp.read().decode())
        assert data[-1] == "[DONE]"
        err = json.loads(data[-2])["error"]
        assert err["error_code"] == "WORKER_TIMEOUT" and err["success"] is False and err["request_id"]
        assert httpx.get(s.url + "/status").json()["performance"]["requests_running"] == 0
