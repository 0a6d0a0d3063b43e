"""The settings the worker and the gateway share (`ServerSettings`): one set of fields, one
comma-list rule for the environment, one rule against listening publicly without keys."""

from __future__ import annotations

import pytest

from pureinfer.gateway.settings import GatewaySettings
from pureinfer.settings import ServerSettings, WorkerSettings, split_commas


def test_both_servers_extend_one_base():
    shared = set(ServerSettings.model_fields)
    assert {"host", "port", "cache_dir", "api_keys", "insecure", "log_level", "log_prompts"} <= shared
    for cls in (WorkerSettings, GatewaySettings):
        assert issubclass(cls, ServerSettings) and shared <= set(cls.model_fields)
    assert (WorkerSettings().port, GatewaySettings().port) == (8000, 8080)


def test_comma_lists_from_the_environment(monkeypatch, tmp_path):
    assert split_commas(" a, b,,c ") == ["a", "b", "c"] and split_commas(["x"]) == ["x"]
    monkeypatch.setenv("PUREINFER_API_KEYS", "k1, k2")
    monkeypatch.setenv("PUREINFER_ADMIN_KEYS", "a1,a2")
    monkeypatch.setenv("PUREINFER_WORKER_ALLOWLIST", "10.0.0.0/8,*.gpu.internal")
    monkeypatch.setenv("PUREINFER_TEXT_MODELS", "m=/models/a,/models/b")
    g = GatewaySettings(cache_dir=tmp_path)
    assert (g.api_keys, g.admin_keys, g.worker_allowlist) == (["k1", "k2"], ["a1", "a2"],
                                                              ["10.0.0.0/8", "*.gpu.internal"])
    w = WorkerSettings(cache_dir=tmp_path)
    assert (w.api_keys, w.text_models) == (["k1", "k2"], ["m=/models/a", "/models/b"])


def test_public_listen_needs_keys(tmp_path):
    with pytest.raises(ValueError, match="without an API key"):
        WorkerSettings(host="0.0.0.0", cache_dir=tmp_path)
    assert WorkerSettings(host="0.0.0.0", api_keys=["k"], cache_dir=tmp_path).api_keys == ["k"]
    with pytest.raises(ValueError, match="without an admin key"):
        GatewaySettings(host="0.0.0.0", api_keys=["k"], cache_dir=tmp_path)
    assert GatewaySettings(host="::1", cache_dir=tmp_path).host == "::1"  # loopback: open is fine
