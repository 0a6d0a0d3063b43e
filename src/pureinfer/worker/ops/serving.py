"""Health, status and capability documents (the seed's /health, /status, /worker/info), built from
measured figures only: anything we cannot measure here is `null`."""

from __future__ import annotations

from typing import Any

from pureinfer import __version__
from pureinfer.api.native.protocol import ARCHITECTURE
from pureinfer.worker.gpu import gpu_figures, process_memory_mb
from pureinfer.worker.runtime import WorkerRuntime
from pureinfer.worker.state import WorkerState

PURE_CAPABILITIES = ["pure_inference", "no_prompt_overrides", "template_respect", "enhanced_logging"]


class OpsServing:
    def __init__(self, runtime: WorkerRuntime, endpoints: list[str]) -> None:
        self.rt = runtime
        self.endpoints = endpoints

    # ---- pieces ------------------------------------------------------------------------------
    def model(self) -> str | None:
        if self.rt.text is not None:
            return self.rt.text.default_alias
        if self.rt.image is not None:
            return self.rt.image.info().get("model")
        return None

    def models(self) -> list[str]:
        names = list(self.rt.text.models()) if self.rt.text is not None else []
        if self.rt.image is not None:
            names.append(self.rt.image.info().get("model"))
        return names

    def capabilities(self) -> list[str]:
        caps = list(PURE_CAPABILITIES)
        if self.rt.settings.role.serves_text:
            caps += ["streaming", "continuous_batching", "openai_compatible"]
        if self.rt.settings.role.serves_images:
            caps += ["image_generation", "request_batching", "exact_seeds"]
        return caps

    def security_features(self) -> list[str]:
        features = ["no_hardcoded_prompts", "edge_function_control", "template_override_protection"]
        if self.rt.settings.api_keys:
            features.append("api_key_auth")
        if self.rt.settings.signing_secret:
            features.append("request_signature_verification")
        return features

    def security(self) -> dict[str, Any]:
        return {"pure_inference": True, "no_prompt_overrides": True, "template_override_risk": "eliminated",
                "hardcoded_prompts": False, "edge_function_control": True,
                "api_keys_required": bool(self.rt.settings.api_keys),
                "signatures_required": bool(self.rt.settings.signing_secret)}

    def memory_optimized(self) -> bool:
        """True when the weights run in half precision (bf16/fp16) — what we actually do to save memory."""
        return self.rt.dtype in ("bfloat16", "float16")

    # ---- documents ---------------------------------------------------------------------------
    def health_status(self) -> str:
        state = self.rt.lifecycle.state
        if state == WorkerState.READY:
            return "healthy" if self.rt.engines_alive() else "unhealthy"
        return {"starting": "starting", "draining": "draining"}.get(state.value, "unhealthy")

    def health(self) -> dict[str, Any]:
        gpu = gpu_figures()
        mem_mb = process_memory_mb()
        doc = {
            "status": self.health_status(),
            "state": self.rt.lifecycle.state.value,
            "worker_type": self.rt.worker_type,
            "model": self.model(),
            "uptime": round(self.rt.uptime_s(), 1),
            "memory_usage": f"{mem_mb / 1024:.2f}GB",
            "gpu_utilization": f"{gpu.utilization_percent:.0f}%" if gpu else None,
            "gpu_memory_usage": f"{gpu.memory_used_mb / 1024:.2f}GB" if gpu else None,
            "pure_inference_engine": True,
            "no_prompt_overrides": True,
            "template_override_risk": "eliminated",
            "hardcoded_prompts": False,
            "edge_function_control": True,
            "capabilities": self.capabilities(),
        }
        return doc

    def status(self) -> dict[str, Any]:
        gpu = gpu_figures()
        window = self.rt.window.figures()
        performance: dict[str, Any] = {
            "requests_per_minute": window.requests_per_minute,
            "average_response_time": window.average_response_time,
            "error_rate": window.error_rate,
            "window_s": self.rt.window.window_s,
            "memory_usage_mb": process_memory_mb(),
            "gpu_utilization_percent": gpu.utilization_percent if gpu else None,
            "gpu_memory_used_mb": gpu.memory_used_mb if gpu else None,
            "gpu_memory_total_mb": gpu.memory_total_mb if gpu else None,
            "requests_in_flight": self.rt.admission.in_flight,
        }
        if self.rt.text is not None:
            performance["requests_running"] = self.rt.text.running()
            performance["requests_waiting"] = self.rt.text.waiting()
        if self.rt.image is not None:
            performance["image"] = self.rt.image.stats()
        return {
            "status": "operational" if self.rt.ready() else self.health_status(),
            "worker_info": {"type": self.rt.worker_type, "model": self.model(), "version": __version__,
                            "architecture": ARCHITECTURE, "device": self.rt.device, "dtype": self.rt.dtype,
                            "gpu": gpu.name if gpu else None},
            "performance": performance,
            "security": self.security(),
            "capabilities": {"endpoints": self.endpoints, "models": self.models(), "features": self.capabilities()},
        }

    def worker_info(self) -> dict[str, Any]:
        window = self.rt.window.figures()
        info: dict[str, Any] = {
            "worker_type": self.rt.worker_type,
            "model": self.model(),
            "models": self.models(),
            "architecture": ARCHITECTURE,
            "capabilities": self.capabilities(),
            "endpoints": self.endpoints,
            "security_features": self.security_features(),
            "performance": {
                "max_tokens": self.rt.settings.max_tokens_limit,
                "response_time_ms": round(window.average_response_time * 1000, 1)
                if window.average_response_time is not None else None,
                "memory_optimized": self.memory_optimized(),
                "max_running_requests": self.rt.settings.max_running_requests,
                "max_queued_requests": self.rt.settings.max_queued_requests,
                "request_timeout_s": self.rt.settings.request_timeout_s,
            },
        }
        if self.rt.text is not None:
            info["text_models"] = {alias: {"n_ctx": e.n_ctx, "chat_template": e.has_chat_template,
                                           "source": e.model_id}
                                   for alias, e in self.rt.text.engines.items()}
        if self.rt.image is not None:
            info["image"] = self.rt.image.info()
        return {"success": True, "worker_info": info}
