"""`stream: true` on the image `/generate`: per-step progress as Server-Sent Events, then the full
response; refusals keep their HTTP status; a client that leaves cancels the generation. On the
real tiny pipeline; nothing here depends on how fast a step runs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.image import build_app
from tests.support.live import LiveServer

BASE = {"prompt": "a red castle at sunset", "negative_prompt": "blurry", "width": 64, "height": 64,
        "steps": 4, "cfg_scale": 7.5, "seed": 77, "stream": True}


def sse_data(text: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded (the final [DONE] kept as a string)."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_progress_events_in_order_then_the_full_response(client) -> None:
    r = client.post("/generate", json=BASE | {"num_images": 2})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    *progress, final = events[:-1]
    assert [e["progress"] for e in progress] == [{"step": i, "total": 4} for i in range(1, 5)]
    assert {e["request_id"] for e in progress} == {final["request_id"]}
    assert final["success"] is True and [i["seed"] for i in final["images"]] == [77, 78]
    assert final["execution_metadata"]["worker_type"] == "image"
    assert final["execution_metadata"]["seeds"] == [77, 78]
    assert client.get(final["image_url"]).status_code == 200
    # The same request without streaming gives the same images (the seed decides, not the route).
    plain = client.post("/generate", json=BASE | {"num_images": 2, "stream": False}).json()
    assert client.get(plain["image_url"]).content == client.get(final["image_url"]).content


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_an_event_echoing_a_unicode_line_separator_stays_one_line(client, separator: str) -> None:
    """The final event echoes the prompt. JSON leaves U+2028, U+2029 and NEL raw inside strings, and
    a reader that splits with `str.splitlines` (httpx's `aiter_lines`, as the gateway did, and as
    `sse_data` above does) would cut the event in two: they are written escaped."""
    prompt = f"a castle{separator}at dusk"
    r = client.post("/generate", json=BASE | {"prompt": prompt, "steps": 1})
    assert r.status_code == 200, r.text
    assert separator not in r.text
    *_, final, done = sse_data(r.text)
    assert done == "[DONE]" and final["metadata"]["prompt"] == prompt


def test_a_refused_stream_keeps_its_status_and_envelope(client) -> None:
    r = client.post("/generate", json=BASE | {"width": 65})
    assert r.status_code == 400 and not r.headers["content-type"].startswith("text/event-stream")
    body = r.json()
    assert body["error_code"] == "INVALID_PAYLOAD" and body["details"]["fields"][0]["field"] == "width"


def test_the_permit_is_returned_after_a_stream(client, serving) -> None:
    assert client.post("/generate", json=BASE).status_code == 200
    assert serving.admission.counts["image"] == 0


@pytest.fixture()
def live(serving) -> Iterator[LiveServer]:
    with LiveServer(build_app(serving), lifespan="off") as s:
        yield s


def _until(cond: Callable[[], bool], what: str, bound_s: float = 60.0) -> None:
    end = time.monotonic() + bound_s
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.01)


def test_a_client_that_leaves_mid_stream_cancels_the_generation(live, serving, engine) -> None:
    """The client reads two progress events of a 150-step request; the UNet is then held inside
    a step while the client closes the socket: the permit comes back while the step still runs,
    and once released the engine stops the batch at the end of that step."""
    before = engine.stats()
    hold, in_step, release = threading.Event(), threading.Event(), threading.Event()

    def held(_module: Any, _args: Any) -> None:  # the engine thread waits inside the step
        if hold.is_set():
            in_step.set()
            release.wait(60)

    handle = engine._pipe.unet.register_forward_pre_hook(held)
    try:
        body = json.dumps(BASE | {"steps": 150}).encode()
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(f"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        sock.settimeout(60)
        while received.count(b'"progress"') < 2:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended before two progress events: {received!r}"
            received += chunk
        assert b" 200 " in received.split(b"\r\n", 1)[0]
        hold.set()
        assert in_step.wait(60), "the request never reached another step"
        sock.close()
        _until(lambda: serving.admission.counts["image"] == 0, "the permit was returned")
    finally:
        handle.remove()
        release.set()
    _until(lambda: engine.num_running == 0 and engine.num_waiting == 0, "the engine dropped the request")
    after = engine.stats()
    assert after["abandoned_batches"] == before["abandoned_batches"] + 1
    assert after["denoise_steps"] - before["denoise_steps"] < 150


async def test_generate_on_progress_runs_on_the_event_loop(serving) -> None:
    from pureinfer.api.image.protocol import ImageGenerateRequest

    loop_thread = threading.current_thread()
    seen: list[tuple[int, int]] = []

    def on_progress(step: int, total: int) -> None:
        assert threading.current_thread() is loop_thread
        seen.append((step, total))

    req = ImageGenerateRequest.model_validate({k: v for k, v in BASE.items() if k != "stream"} | {"steps": 3})
    out = await serving.generate(req, "progress-on-loop", on_progress=on_progress)
    assert seen == [(1, 3), (2, 3), (3, 3)] and out["images"][0]["seed"] == 77
