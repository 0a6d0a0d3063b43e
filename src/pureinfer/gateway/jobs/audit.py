"""The audit row of a finished job ("complete logging of all prompt interactions").

Written by the gateway whose guarded status update finished the job (service.py `_finished`),
so exactly once per job whichever gateway stores its end, on either queue. It is the row the
sync routes write, built by their own recorders (PromptingService.record, ImageService.record)
from what the job's SQL row holds: the worker call the gateway built at submission (messages,
sampling), the template it selected (`meta`), and the stored result or error. The endpoint
names the job type: `jobs/enhance`, `jobs/text`, `jobs/image`.

The latency is the job's whole life (created to finished): queue wait included, as a caller
of the job waited it.
"""

from __future__ import annotations

import time
from typing import Any

from pureinfer.db.models import JobRecord
from pureinfer.db.store import as_utc
from pureinfer.errors import from_envelope
from pureinfer.gateway.images.protocol import Enhancement, GenerateImageRequest
from pureinfer.gateway.images.service import ImageInteraction, ImageService
from pureinfer.gateway.prompting.service import Interaction, PromptingService, TemplateUse, messages_sha256
from pureinfer.queue.status import JobStatus


def _outcome(row: JobRecord) -> tuple[int, str | None]:
    """The HTTP status and error code the sync route would have answered."""
    if row.status == JobStatus.SUCCEEDED.value:
        return 200, None
    if row.status == JobStatus.CANCELLED.value:
        return 499, "CANCELLED"
    err = row.error if isinstance(row.error, dict) else {}
    return from_envelope(err).http_status, str(err.get("error_code") or "INTERNAL_ERROR")


def _started(row: JobRecord) -> float:
    """A perf_counter origin that makes the recorders' latency the job's created-to-finished time."""
    created, finished = as_utc(row.created_at), as_utc(row.finished_at)
    life = (finished - created).total_seconds() if created and finished else 0.0
    return time.perf_counter() - max(0.0, life)


def record_job(row: JobRecord, prompting: PromptingService, images: ImageService) -> None:
    status, code = _outcome(row)
    result: dict[str, Any] = row.result if isinstance(row.result, dict) and status == 200 else {}
    work = row.work or {}
    endpoint = f"jobs/{row.type}"
    if row.type == "image":
        req = GenerateImageRequest.model_validate(work["request"])
        img = ImageInteraction(endpoint, row.request_id, row.caller_key_id, req, started=_started(row),
                               worker_id=row.worker_id, attempts=row.attempts or None,
                               steps_seen=row.progress_step or 0, response=result or None)
        if isinstance(result.get("prompt_used"), str):
            img.prompt_used = result["prompt_used"]
        if isinstance(result.get("enhancement"), dict):
            img.enhancement = Enhancement.model_validate(result["enhancement"])
        images.record(img, status, code)
        return
    meta = row.meta or {}
    payload: dict[str, Any] = work.get("payload") or {}
    messages = payload.get("messages") or []
    prompt = meta.get("original_prompt") or (messages[-1].get("content", "") if messages else "")
    template = (TemplateUse(meta["template_name"], meta["template_version"], meta["fallback_level"],
                            meta.get("cache_hit")) if meta.get("template_name") else None)
    it = Interaction(endpoint, row.request_id, row.caller_key_id, prompt, started=_started(row), template=template,
                     messages=messages, messages_sha=messages_sha256(messages) if messages else None,
                     sampling={k: v for k, v in payload.items() if k not in ("messages", "stream")},
                     worker_id=row.worker_id, attempts=row.attempts or None)
    if result:
        # What the worker reported (model, seed used, token counts, its prompt hash): at the top
        # level of a text result, in the execution metadata of an enhance result.
        it.observe(result.get("execution_metadata") or {} if row.type == "enhance" else result)
        text = result.get("enhanced_prompt") if row.type == "enhance" else result.get("response")
        it.response = text if isinstance(text, str) else None
    prompting.record(it, status, code)
