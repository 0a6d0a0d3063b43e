"""/health, /status, /worker/info and /metrics: the seed's fields, measured figures only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.worker import msgs


def test_health_fields(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    for key in ("status", "worker_type", "model", "uptime", "memory_usage", "gpu_utilization",
                "pure_inference_engine", "no_prompt_overrides", "template_override_risk", "hardcoded_prompts",
                "edge_function_control", "capabilities"):
        assert key in h, key
    assert h["status"] == "healthy" and h["worker_type"] == "chat" and h["model"] == "qwen_instruct"
    assert h["uptime"] >= 0 and h["memory_usage"].endswith("GB") and float(h["memory_usage"][:-2]) > 0.01
    assert h["gpu_utilization"] is None  # no GPU on this machine: null, never an invented number
    assert h["hardcoded_prompts"] is False and h["template_override_risk"] == "eliminated"


def test_live_and_ready(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"ready": True, "state": "ready"}


def test_status_window_counts_requests_and_errors(client: TestClient) -> None:
    before = client.get("/status").json()["performance"]
    n_before = before["requests_per_minute"] * before["window_s"] / 60 if before["requests_per_minute"] else 0
    for _ in range(3):
        assert client.post("/chat", json={"messages": msgs(), "max_tokens": 2}).status_code == 200
    refused = client.post("/chat", json={"messages": []})
    assert (refused.status_code, refused.json()["error_code"]) == (400, "INVALID_PAYLOAD")
    s = client.get("/status").json()
    assert s["status"] == "operational"
    assert s["worker_info"]["architecture"] == "pure_inference_engine" and s["worker_info"]["version"]
    p = s["performance"]
    n_after = p["requests_per_minute"] * p["window_s"] / 60
    assert round(n_after - n_before) == 4
    assert p["average_response_time"] > 0
    assert 0 < p["error_rate"] < 1
    assert p["memory_usage_mb"] > 10 and p["gpu_utilization_percent"] is None
    assert s["security"]["pure_inference"] is True and s["security"]["api_keys_required"] is True
    assert "/chat" in s["capabilities"]["endpoints"] and s["capabilities"]["models"] == ["qwen_instruct"]


def test_worker_info(client: TestClient) -> None:
    info = client.get("/worker/info").json()
    assert info["success"] is True
    w = info["worker_info"]
    assert w["worker_type"] == "chat" and w["model"] == "qwen_instruct"
    assert w["architecture"] == "pure_inference_engine"
    assert {"pure_inference", "no_prompt_overrides", "template_respect", "enhanced_logging"} <= set(w["capabilities"])
    assert {"/chat", "/enhance", "/generate", "/worker/info"} <= set(w["endpoints"])
    assert {"no_hardcoded_prompts", "edge_function_control", "template_override_protection",
            "api_key_auth"} <= set(w["security_features"])
    assert w["performance"]["max_tokens"] == 2000
    assert w["performance"]["memory_optimized"] is False  # fp32 on CPU
    assert w["text_models"]["qwen_instruct"]["n_ctx"] == 2048


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_errors_and_tokens(client: TestClient) -> None:
    m0 = client.get("/metrics").text
    r = client.post("/chat", json={"messages": msgs(), "max_tokens": 4, "min_tokens": 4})
    assert r.status_code == 200
    client.post("/chat", json={"messages": msgs(), "max_tokens": 99999})
    m1 = client.get("/metrics").text
    assert _metric(m1, "pureinfer_requests_total", endpoint="/chat", status="200") - \
        _metric(m0, "pureinfer_requests_total", endpoint="/chat", status="200") == 1
    assert _metric(m1, "pureinfer_errors_total", code="TOKEN_LIMIT_EXCEEDED") - \
        _metric(m0, "pureinfer_errors_total", code="TOKEN_LIMIT_EXCEEDED") == 1
    assert _metric(m1, "pureinfer_generation_tokens_total", model="qwen_instruct") - \
        _metric(m0, "pureinfer_generation_tokens_total", model="qwen_instruct") == 4
    assert _metric(m1, "pureinfer_prompt_tokens_total", model="qwen_instruct") - \
        _metric(m0, "pureinfer_prompt_tokens_total", model="qwen_instruct") == r.json()["prompt_tokens"]
    for name in ("pureinfer_time_to_first_token_seconds_bucket", "pureinfer_e2e_request_latency_seconds_bucket",
                 "pureinfer_http_request_duration_seconds_bucket", "pureinfer_num_requests_running",
                 "pureinfer_inter_token_latency_seconds_bucket", "pureinfer_request_queue_time_seconds_bucket"):
        assert name in m1, name
