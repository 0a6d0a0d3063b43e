"""The text engine: a transformers causal LM with continuous batching in its own thread.

Layout (each part in its own module, this one wires them):

    asyncio side                         engine thread
    ------------                         -------------
    generate(request) ── Scheduler.add ──> schedule(): aborts, deadlines, admission, chunks
         ^                               forward: all scheduled tokens packed in one row,
         |                                        ragged attention over per-request caches
         |                                        (attention)
    Channel (coalescing, call_soon_      sample: per-row params and generators (sampling)
    threadsafe) <───────────────────── detokenize, stops, finish (output)

The event loop never waits on the model; the engine thread never waits on a consumer. Each
request's channel coalesces what the consumer hasn't read yet into one delta, so a slow
consumer costs at most its own output text in memory.

Why our own scheduler and not transformers' ContinuousBatchingManager (``generate_batch``)
--------------------------------------------------------------------------------------------
Measured in one run on the 2-core CPU of the development machine (``pureinfer bench text
--with-cbm``: Qwen2.5-0.5B shape, random weights, fp32, 16 prompt + 32 output tokens, sampling;
bench/README.md has the tables): naive one-at-a-time ``generate()`` 4.4 tok/s, one static
``generate()`` batch of 16 19.8 tok/s, ContinuousBatchingManager with 16 requests 12.4 tok/s
(62% of the static batch: below the 85% target; 52-72% in other runs), this engine at 16
concurrent requests 31.5 tok/s (7.2x naive, 1.6x the static batch; HTTP path 0.96-1.11 of it
in reruns). The manager also draws every row from one random stream (a seeded request's tokens
then depend on its neighbours) and takes one set of generation parameters per manager.
This engine keeps transformers for everything model-shaped (``from_pretrained``, the model's
own forward, RoPE, MLPs, transformers' SDPA attention function) and replaces only the batching:
packed tokens + per-request caches (no padding of prompts, no cache copies when requests join
or leave), per-row parameters and generators with a sort-free top-p, and on CPU decoding-batch
linears computed as ``W @ x.T`` (linear).

Determinism: a seeded request draws only from its own ``torch.Generator``, so its tokens don't
depend on its neighbours' sampling. Its logits are the same alone or batched up to the last
bits of the matrix products (BLAS results depend on the number of rows); a request that runs
alone sees exactly the shapes a batch-1 ``generate()`` sees, so greedy output alone equals
``model.generate(do_sample=False)``. The tests check greedy and seeded outputs alone vs batched.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncGenerator
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from pureinfer.engines.base import TextDelta, TextRequest
from pureinfer.engines.device import pick_device, pick_dtype, translate_device_errors
from pureinfer.engines.text import linear as text_linear
from pureinfer.engines.text.attention import ATTN_IMPLEMENTATION, StepBatch, new_kv_cache, no_masks
from pureinfer.engines.text.channel import Channel
from pureinfer.engines.text.output import OutputText
from pureinfer.engines.text.sampling import RowParams, sample_rows
from pureinfer.engines.text.scheduler import Plan, Scheduler, Sequence
from pureinfer.errors import InternalError, InvalidPayload, PureInferError, WorkerTimeout, WorkerUnavailable

log = logging.getLogger(__name__)


def load_text_engine(
    path_or_id: str,
    *,
    device: str | None = None,
    dtype: str = "auto",
    max_running: int = 16,
    max_waiting: int = 64,
    max_step_tokens: int | None = None,
) -> HFTextEngine:
    """Load tokenizer and model with ``from_pretrained`` (a local directory works offline)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(path_or_id)
    model: Any = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=torch_dtype)
    model.to(device).eval()
    return HFTextEngine(
        model,
        tokenizer,
        model_id=path_or_id,
        max_running=max_running,
        max_waiting=max_waiting,
        max_step_tokens=max_step_tokens,
    )


@dataclass(slots=True)
class _SeqState:
    """Per-request engine state (lives on the Sequence, never on the engine)."""

    generator: torch.Generator | None
    output: OutputText
    seen_ids: torch.Tensor | None  # for the repetition penalty


class HFTextEngine:
    """`TextEngine` over a loaded transformers causal LM; see the module docstring."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        max_running: int = 16,
        max_waiting: int = 64,
        max_step_tokens: int | None = None,
    ) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{model_id}: a fast tokenizer (tokenizer.json) is required")
        if "sliding_attention" in (getattr(model.config, "layer_types", None) or ()):
            # ragged_attention attends to the whole context; refusing beats wrong output.
            raise ValueError(f"{model_id}: sliding-window attention layers are not supported by the text engine")
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
        self.device = next(model.parameters()).device
        if self.device.type == "cpu":
            text_linear.install(model)
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        config = model.config
        self.n_ctx = int(getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.dtype = next(model.parameters()).dtype
        # A fast (Rust) tokenizer can refuse concurrent use ("Already borrowed") when a call changes
        # its truncation/padding: the engine thread decodes with its own copy, and `encode` (from
        # any caller thread) takes a lock.
        self._decoder_tokenizer = Tokenizer.from_str(backend.to_str())
        self._encode_lock = threading.Lock()
        self._eos_ids = _eos_ids(model, tokenizer)
        self._eos_tensor = torch.tensor(sorted(self._eos_ids), dtype=torch.long, device=self.device)
        if max_step_tokens is None:
            max_step_tokens = 4096 if self.device.type == "cuda" else 256
        self._scheduler = Scheduler(
            max_running=max_running, max_waiting=max_waiting, max_step_tokens=max_step_tokens
        )
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dead = False
        self.steps = 0  # decoding steps run (for metrics and tests)

    # -- the TextEngine protocol ---------------------------------------------------------

    @functools.cached_property
    def control_tokens(self) -> frozenset[str]:
        # Every added token, special or not: Qwen's <tool_call> and <|fim_*|> are "not special"
        # yet are markup all the same. Added tokens made only of whitespace (some code models
        # add runs of spaces) are text, and could forge nothing.
        added = {t.content for t in self.tokenizer.added_tokens_decoder.values()}
        return frozenset(t for t in added | set(self.tokenizer.all_special_tokens) if t.strip())

    def apply_chat_template(self, messages: Seq[dict[str, str]]) -> str:
        import jinja2

        if not self.has_chat_template:
            raise ValueError(f"{self.model_id} has no chat template (admission checks has_chat_template)")
        try:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        except jinja2.TemplateError as exc:  # the template's own refusal (e.g. roles out of order)
            raise InvalidPayload.field("messages", f"the model's chat template refused these messages: {exc}") from None

    def encode(self, text: str) -> list[int]:
        # The rendered template already holds its special tokens: add none.
        with self._encode_lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    @property
    def num_running(self) -> int:
        return self._scheduler.num_running

    @property
    def num_waiting(self) -> int:
        return self._scheduler.num_waiting

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._dead

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"text-engine:{self.model_id}", daemon=True)
        self._thread.start()

    async def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        for seq in self._scheduler.drain():
            seq.channel.fail(WorkerUnavailable("The text engine shut down"))

    async def generate(self, request: TextRequest) -> AsyncGenerator[TextDelta, None]:
        """Stream the output of one request. Closing the generator or cancelling its consumer
        aborts the request within one step; a passed deadline raises WORKER_TIMEOUT.

        The deadline has one guard, the scheduler's check at the start of every step, which also
        frees the request's place; nothing on this side times out, because a step that never
        returns stalls every request alike (a hung device), which no per-request timer can fix."""
        seq = self._submit(request, asyncio.get_running_loop())
        try:
            while True:
                await seq.channel.event.wait()
                delta, error, closed = seq.channel.take()
                if delta is not None:
                    yield delta
                if error is not None:
                    raise error
                if closed:
                    return
        finally:
            # The consumer lets go, whatever the reason: a running request stops at the next step,
            # a finished one stops counting against the engine's size at once (see Scheduler.add).
            self._scheduler.abort(seq)
            self._wake.set()

    # -- the asyncio side -----------------------------------------------------------------

    def _submit(self, request: TextRequest, loop: asyncio.AbstractEventLoop) -> Sequence:
        if not self.is_alive():
            raise WorkerUnavailable("The text engine is not running")
        prompt = list(request.prompt_ids)
        params = request.params
        # Admission guarantees both (TextRequest's contract); breaking them is a bug above the engine.
        if not prompt:
            raise ValueError("a TextRequest needs at least one prompt token")
        if len(prompt) + params.max_tokens > self.n_ctx:
            raise ValueError(f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_tokens}) "
                             f"exceeds the context ({self.n_ctx})")
        generator = None if params.greedy else torch.Generator().manual_seed(params.seed)
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(prompt)), dtype=torch.long, device=self.device)
        state = _SeqState(
            generator=generator,
            output=OutputText(
                self._decoder_tokenizer,
                eos_ids=self._eos_ids,
                stop=params.stop,
                min_tokens=params.min_tokens,
                max_tokens=params.max_tokens,
            ),
            seen_ids=seen,
        )
        seq = Sequence(request=request, tokens=prompt, n_prompt=len(prompt), channel=Channel(loop), state=state)
        self._scheduler.add(seq)
        self._wake.set()
        return seq

    # -- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.clear()
                if not self._scheduler.has_work():
                    self._wake.wait(timeout=1.0)
                    continue
                plan = self._scheduler.schedule()
                for seq in plan.expired:
                    seq.channel.fail(WorkerTimeout("The request's deadline passed", {"during": "text generation"}))
                if plan.work:
                    self._step(plan)
        except BaseException:
            log.exception("text engine loop died")
            self._dead = True
            for seq in self._scheduler.drain():
                seq.channel.fail(InternalError("The text engine stopped"))

    @torch.inference_mode()
    def _step(self, plan: Plan) -> None:
        """One forward pass over every scheduled token, then one new token per finished prompt."""
        # 1. A cache for each request that runs for the first time (an OOM here fails only it).
        work: list[tuple[Sequence, int]] = []
        for seq, n in plan.work:
            if seq.kv is None:
                try:
                    with translate_device_errors("KV cache allocation"):
                        seq.kv = new_kv_cache(self.model.config, seq.n_prompt + seq.request.params.max_tokens,
                                              dtype=self.dtype, device=self.device)
                except PureInferError as exc:
                    self._scheduler.finish(seq)
                    seq.channel.fail(exc)
                    continue
            work.append((seq, n))
        if not work:
            return
        # 2. Pack the tokens of all scheduled sequences into one row; forward; sample.
        batch = StepBatch()
        input_ids: list[int] = []
        positions: list[int] = []
        last_index: list[int] = []
        sampling: list[Sequence] = []
        try:
            with translate_device_errors("text generation step"), text_linear.engine_linears():
                for seq, n in work:
                    seg = batch.add(seq.kv, seq.n_cached, n)
                    input_ids.extend(seq.tokens[seq.n_cached : seq.n_cached + n])
                    positions.extend(range(seq.n_cached, seq.n_cached + n))
                    if seq.n_cached + n == len(seq.tokens):  # prompt done or decoding: sample
                        last_index.append(seg.offset + n - 1)
                        sampling.append(seq)
                out = self.model(
                    input_ids=torch.tensor([input_ids], device=self.device),
                    position_ids=torch.tensor([positions], device=self.device),
                    attention_mask=no_masks(self.model.config),
                    use_cache=False,
                    logits_to_keep=torch.tensor(last_index, dtype=torch.long, device=self.device),
                    pureinfer_step=batch,
                )
                rows = [self._row_params(seq) for seq in sampling]
                tokens = sample_rows(out.logits[0], rows, self._eos_tensor) if sampling else []
        except PureInferError as exc:  # OOM or a model failure: these requests fail, the engine goes on
            for seq, _ in work:
                self._scheduler.finish(seq)
                seq.channel.fail(exc)
            return
        self.steps += 1
        for seq, n in work:
            seq.n_cached += n
        # 3. Hand out the new tokens.
        for seq, token in zip(sampling, tokens, strict=True):
            seq.tokens.append(token)
            state: _SeqState = seq.state
            if state.seen_ids is not None:
                state.seen_ids = torch.cat([state.seen_ids, torch.tensor([token], device=self.device)])
            step = state.output.add(token)
            seq.channel.push(step.text, token, step.finish_reason)
            if step.finish_reason is not None:
                self._scheduler.finish(seq)

    def _row_params(self, seq: Sequence) -> RowParams:
        p = seq.request.params
        state: _SeqState = seq.state
        return RowParams(
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k,
            repetition_penalty=p.repetition_penalty,
            suppress_eos=seq.n_generated < p.min_tokens,
            generator=state.generator,
            seen_ids=state.seen_ids,
        )


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(int(i) for i in gen_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)
