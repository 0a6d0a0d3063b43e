"""`POST /generate` on a worker with role `all`, where the native text and image APIs share a path.

Either way the body is validated once, into the one typed request of its kind, and takes the
same path (permit, validation, engine) as on a chat or image worker.

The rule, decided by the body's field names alone (values play no part):
  - a body with `messages` or any text-only field (max_tokens, min_tokens, temperature, top_p,
    top_k, stop, repetition_penalty, model) is a text request;
  - a body with any image-only field (negative_prompt, width, height, steps, cfg_scale,
    num_images, scheduler, output, truncate) is an image request;
  - `stream` belongs to both (text deltas, or image progress per denoising step): it goes with
    the kind the other fields decide, and alone with `prompt` it still means text, as it did
    before images could stream;
  - a body with fields of both kinds, or with only shared fields (`prompt`, `seed`), is ambiguous
    and refused with INVALID_PAYLOAD naming the fields that decided it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from pureinfer.api.native.protocol import GenerateRequest
from pureinfer.api.native.router import respond
from pureinfer.disconnect import unless_disconnected
from pureinfer.errors import InvalidPayload
from pureinfer.http_errors import validation_to_invalid_payload
from pureinfer.worker.runtime import WorkerRuntime

TEXT_ONLY = frozenset({"messages", "max_tokens", "min_tokens", "temperature", "top_p", "top_k", "stop",
                       "repetition_penalty", "model"})
IMAGE_ONLY = frozenset({"negative_prompt", "width", "height", "steps", "cfg_scale", "num_images", "scheduler",
                        "output", "truncate"})


def classify(body: Any) -> str:
    """'text' or 'image', or INVALID_PAYLOAD saying why the body is neither or both."""
    if not isinstance(body, dict):
        raise InvalidPayload.field("body", "must be a JSON object")
    keys = set(body)
    text, image = sorted(keys & TEXT_ONLY), sorted(keys & IMAGE_ONLY)
    if text and image:
        raise InvalidPayload(
            f"Ambiguous /generate body: text fields {text} and image fields {image} together",
            {"fields": [{"field": f, "message": "text-only field in an image request" if f in text
                         else "image-only field in a text request"} for f in text + image]})
    if text:
        return "text"
    if image:
        return "image"
    if "stream" in keys:  # shared, but without image fields it has always meant text
        return "text"
    raise InvalidPayload(
        "Ambiguous /generate body: add `messages` or a text field (e.g. max_tokens) for text, "
        "or an image field (e.g. width, steps) for an image",
        {"fields": [{"field": "body", "message": "only shared fields (prompt, seed): text or image?"}]})


def build_dispatch_router(runtime: WorkerRuntime) -> APIRouter:
    router = APIRouter(tags=["text", "image"])

    @router.post("/generate")
    async def generate(request: Request) -> Response:
        """Text or image generation, chosen by the rule in this module's docstring."""
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise InvalidPayload.field("body", f"malformed JSON: {exc}") from None
        try:
            if classify(body) == "text":
                return await respond(runtime.require_text(), "generate", GenerateRequest.model_validate(body), request)
            from pureinfer.api.image.protocol import ImageGenerateRequest

            image_req = ImageGenerateRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_to_invalid_payload(list(exc.errors())) from None
        from pureinfer.api.image.router import native_answer

        if image_req.stream:  # the stream's response cancels the generation when the client leaves
            return await native_answer(runtime.require_image(), image_req, request)
        return await unless_disconnected(request.receive, native_answer(runtime.require_image(), image_req, request))

    return router
