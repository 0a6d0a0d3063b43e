"""`bench text`'s report: the targets, evaluated on the figures of one run.

CPU (the serving-engine issue): at concurrency 16, engine vs naive `generate()` >= 4.5, vs one
static `generate()` batch >= 0.85, HTTP vs engine >= 0.90, e2e p95/p50 <= 1.5.
GPU (the fast-path issue), where measured: batch-1 decode tokens/s x weight bytes >= 60% of the
device-to-device copy bandwidth of the same run; 64 concurrent requests over HTTP >= 3,000
tokens/s and >= 4.5x transformers' continuous batching (the anchor of the same run); TTFT p50
<= 150 ms at 16 concurrent requests.
"""

from __future__ import annotations

from typing import Any

TARGETS = {"vs_naive": 4.5, "vs_static_batch": 0.85, "http_vs_engine": 0.90, "e2e_p95_over_p50": 1.5}
GPU_TARGETS = {"decode_b1_bandwidth_fraction": 0.60, "http_64_tokens_per_s": 3000.0, "http_64_vs_cb_anchor": 4.5,
               "ttft_p50_at_16_s": 0.150}
STATIC_BATCH = 16


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def evaluate_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The serving-engine issue's targets, at concurrency 16 (or the nearest level run)."""
    runs = result["runs"]
    if not runs:
        return {}
    run = min(runs, key=lambda r: abs(r["concurrency"] - STATIC_BATCH))
    out: dict[str, Any] = {"at_concurrency": run["concurrency"], "thresholds": TARGETS}
    eng = run.get("engine", {})
    http = run.get("http", {})
    naive = result["baselines"].get("naive", {}).get("tokens_per_s")
    static = result["baselines"].get("static_batch", {}).get("tokens_per_s")

    ratio = _ratio
    checks = {
        "vs_naive": (ratio(eng.get("tokens_per_s"), naive), "vs_naive"),
        "vs_static_batch": (ratio(eng.get("tokens_per_s"), static), "vs_static_batch"),
        "http_vs_engine": (ratio(http.get("tokens_per_s"), eng.get("tokens_per_s")), "http_vs_engine"),
        "e2e_p95_over_p50": (ratio(eng.get("e2e_p95_s"), eng.get("e2e_p50_s")), "e2e_p95_over_p50"),
        "http_e2e_p95_over_p50": (ratio(http.get("e2e_p95_s"), http.get("e2e_p50_s")), "e2e_p95_over_p50"),
    }
    for name, (value, target) in checks.items():
        limit = TARGETS[target]
        op = "<=" if target == "e2e_p95_over_p50" else ">="
        out[name] = value
        out[f"{name}_pass"] = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return out




def evaluate_gpu_targets(result: dict[str, Any], anchor: dict[str, Any] | None) -> dict[str, Any]:
    """The fast-path targets from whatever this run measured (None where a figure is missing)."""
    runs = {r["concurrency"]: r for r in result["runs"]}
    decode = result.get("decode_b1") or {}
    at64 = runs.get(64, {})
    at16 = runs.get(16, {})
    http64 = (at64.get("http") or {}).get("tokens_per_s")
    cb = (anchor or {}).get("A3_cb_64req_tok_s_warm")
    ttft16 = (at16.get("http") or at16.get("engine") or {}).get("ttft_p50_s")
    out: dict[str, Any] = {
        "thresholds": GPU_TARGETS,
        "decode_b1_bandwidth_fraction": decode.get("bandwidth_fraction"),
        "http_64_tokens_per_s": http64,
        "http_64_vs_cb_anchor": _ratio(http64, cb),
        "ttft_p50_at_16_s": ttft16,
    }
    for name, limit in GPU_TARGETS.items():
        value = out[name]
        out[f"{name}_pass"] = None if value is None else (value <= limit if name.startswith("ttft") else value >= limit)
    return out
