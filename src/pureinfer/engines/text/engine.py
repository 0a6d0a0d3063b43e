"""The text engine: a transformers causal LM with continuous batching in its own thread.

Layout (each part in its own module, this one wires them):

    asyncio side                         engine thread
    ------------                         -------------
    generate(request) ── Scheduler.add ──> schedule(): aborts, deadlines, admission, chunks
         ^                               step inputs built on the host, one copy (step)
         |                               forward: all scheduled tokens packed in one row,
         |                                        ragged attention over the slot KV cache
         |                                        (attention, kvcache); decode-only steps
         |                                        replay a captured graph on CUDA (graphs)
    Channel (coalescing, call_soon_      sample: per-row params and generators (sampling),
    threadsafe) <───────────────────── one read-back; detokenize, stops, finish (output)

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
packed tokens + one KV slot per running request, read in place by one attention call per layer
(no padding of prompts, no cache copies when requests join or leave or in any step), per-row
parameters and generators with a sort-free top-p, and on CPU decoding-batch linears computed as
``W @ x.T`` with sibling projections fused (linear).

Memory: the KV cache is planned and allocated when the engine starts (kvcache): a request whose
prompt + max_tokens cannot fit a slot is refused with OUT_OF_MEMORY at submission, and requests
wait in the queue while every slot is taken. Ids past the tokenizer's vocabulary (padded rows of
the output layer) are never sampled. A CUDA error other than an out-of-memory kills the engine
(engines/device.py); an out-of-memory fails the step's requests and the engine goes on.

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
from collections.abc import AsyncGenerator, Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tokenizers import Tokenizer

from pureinfer.engines.base import TextDelta, TextRequest
from pureinfer.engines.device import (
    DeviceLost,
    detached,
    free_device_cache,
    pick_device,
    pick_dtype,
    translate_device_errors,
)
from pureinfer.engines.text import linear as text_linear
from pureinfer.engines.text.attention import ATTN_IMPLEMENTATION, StepBatch, no_masks
from pureinfer.engines.text.channel import Channel
from pureinfer.engines.text.graphs import DecodeGraphs, GraphMode
from pureinfer.engines.text.kvcache import KVShape, SlotKVCache, cuda_kv_budget, plan_slot_len
from pureinfer.engines.text.output import OutputText
from pureinfer.engines.text.sampling import RowParams, SamplingBatch, sample
from pureinfer.engines.text.scheduler import Plan, Scheduler, Sequence
from pureinfer.engines.text.step import DecodeRow, PrefillChunk, build_step, place
from pureinfer.errors import (
    InternalError,
    InvalidPayload,
    OutOfMemory,
    PureInferError,
    WorkerTimeout,
    WorkerUnavailable,
)

log = logging.getLogger(__name__)

# Prompt tokens per step (shared with the decode rows). Each chunk stalls every decoding request
# for its length: pick the largest value whose inter-token latency you accept (bench/README.md).
DEFAULT_STEP_TOKENS_CPU = 256
DEFAULT_STEP_TOKENS_CUDA = 512


def load_text_engine(
    path_or_id: str,
    *,
    device: str | None = None,
    dtype: str = "auto",
    max_running: int = 16,
    max_waiting: int = 64,
    max_step_tokens: int | None = None,
    gpu_memory_fraction: float = 0.9,
    kv_reserve_bytes: int | Callable[[], int] = 0,
    kv_share: int = 1,
) -> HFTextEngine:
    """Load tokenizer and model with ``from_pretrained`` (a local directory works offline).

    On CUDA the KV cache is planned when the engine starts (after every model has loaded):
    ``gpu_memory_fraction`` of the card, less what is allocated then, less ``kv_reserve_bytes``
    (the image engine's peak), split over ``kv_share`` text engines."""
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
        kv_budget=(lambda: cuda_kv_budget(
            torch.device(device), fraction=gpu_memory_fraction, share=kv_share,
            reserve_bytes=kv_reserve_bytes() if callable(kv_reserve_bytes) else kv_reserve_bytes))
        if device.startswith("cuda") else None,
    )


@dataclass(slots=True)
class _SeqState:
    """Per-request engine state (lives on the Sequence, never on the engine)."""

    generator: torch.Generator | None
    output: OutputText
    penalized: bool = False  # its slot's row of the repetition-penalty mask is set up


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
        kv_budget: Any = None,
        decode_graphs: GraphMode | None | Literal["auto"] = "auto",
    ) -> None:
        """``kv_budget``: bytes for the KV cache, or a function that measures them at start-up
        (None: every slot holds the model's whole context; see engines/text/kvcache.py).
        ``decode_graphs``: how decode-only steps run (engines/text/graphs.py); "auto" captures
        CUDA graphs on CUDA and runs plain eager steps on the CPU (None)."""
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
            text_linear.fuse_siblings(model)
            text_linear.pack(model)
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
        # Rows of the output layer past the tokenizer are ids nothing can decode: never sampled.
        n_rows = model.get_output_embeddings().weight.shape[0]
        self._n_valid: int | None = len(tokenizer) if len(tokenizer) < n_rows else None
        self._cuda = self.device.type == "cuda"
        if max_step_tokens is None:
            max_step_tokens = DEFAULT_STEP_TOKENS_CUDA if self._cuda else DEFAULT_STEP_TOKENS_CPU
        self._kv_budget = kv_budget
        self._graph_mode: GraphMode | None = (
            ("cuda_graph" if self._cuda else None) if decode_graphs == "auto" else decode_graphs)
        self._graphs: DecodeGraphs | None = None
        self._kv: SlotKVCache | None = None  # planned and allocated at start()
        self._seen: torch.Tensor | None = None  # [slots + 1, vocab] ids under the repetition penalty
        self._scheduler = Scheduler(
            max_running=max_running, max_waiting=max_waiting, max_step_tokens=max_step_tokens,
            release=self._release_slot,
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
        if self._kv is None:
            await asyncio.to_thread(self._prepare)
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
        self._check_kv_fits(len(prompt) + params.max_tokens)
        state = _SeqState(
            generator=generator,
            output=OutputText(
                self._decoder_tokenizer,
                eos_ids=self._eos_ids,
                stop=params.stop,
                min_tokens=params.min_tokens,
                max_tokens=params.max_tokens,
            ),
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

    # -- the device side: planning, the step --------------------------------------------

    def _prepare(self) -> None:
        """Plan and allocate the KV cache (start-up, before any request)."""
        slots = self._scheduler.max_running
        shape = KVShape.of(self.model.config)
        budget = self._kv_budget() if callable(self._kv_budget) else self._kv_budget
        slot_len = plan_slot_len(shape, self.dtype, slots=slots, n_ctx=self.n_ctx, budget_bytes=budget)
        self._kv = SlotKVCache(shape, slots=slots, slot_len=slot_len, dtype=self.dtype, device=self.device)
        if self._graph_mode is not None:
            self._graphs = DecodeGraphs(self._decode_forward, self._kv, max_rows=slots, mode=self._graph_mode)
            try:
                with torch.inference_mode(), text_linear.engine_linears():
                    self._graphs.capture()
            except Exception:  # a model whose forward cannot be captured still serves, eagerly
                log.exception("decode graphs could not be captured; decode steps run eagerly")
                self._graphs, self._graph_mode = None, None
                free_device_cache()
        log.info("text KV cache planned", extra={"model": self.model_id, "slots": slots, "slot_len": slot_len,
                                                  "gib": round(self._kv.nbytes / 2**30, 2)})

    @property
    def kv_slot_len(self) -> int | None:
        """Positions one request may use (prompt + max_tokens); None before start()."""
        return None if self._kv is None else self._kv.slot_len

    def _check_kv_fits(self, n_tokens: int) -> None:
        if self._kv is not None and not self._kv.fits(n_tokens):
            raise OutOfMemory(
                "The request's prompt tokens + max_tokens exceed the KV cache planned per request",
                {"needed_tokens": n_tokens, "kv_tokens_per_request": self._kv.slot_len},
            )

    def _release_slot(self, seq: Sequence) -> None:
        if self._kv is not None:
            self._kv.release(seq.kv)

    @torch.inference_mode()
    def _step(self, plan: Plan) -> None:
        """One forward pass over every scheduled token, then one new token per finished prompt."""
        kv = self._kv
        assert kv is not None
        # 1. Who feeds what: decode rows by slot, prompt chunks after them.
        decode: dict[int, Sequence] = {}
        chunks: list[tuple[Sequence, int]] = []
        for seq, n in plan.work:
            if seq.kv is None:  # runs for the first time: the scheduler runs at most `slots` requests
                seq.kv = kv.acquire()
                if seq.kv is None:
                    raise RuntimeError("no free KV slot for a running request")
            if seq.prefilled:
                decode[seq.kv] = seq
            else:
                chunks.append((seq, n))
        rows = [DecodeRow(slot, seq.tokens[-1], seq.n_cached) for slot, seq in sorted(decode.items())]
        prompt_chunks = [PrefillChunk(seq.kv, seq.tokens[seq.n_cached : seq.n_cached + n], seq.n_cached,
                                      sample=seq.n_cached + n == seq.n_prompt) for seq, n in chunks]
        # 2. Forward all tokens (a captured graph when only decode rows run), sample every finished
        #    prompt and decode row; one read-back.
        failure: PureInferError | None = None
        try:
            with translate_device_errors("text generation step"), text_linear.engine_linears():
                graph = self._graphs.bucket(rows) if self._graphs is not None and rows and not chunks else None
                if graph is not None:
                    assert self._graphs is not None
                    logits, order = self._graphs.run(rows, graph, pin=self._cuda)
                    n_rows = graph[0]
                else:
                    logits, order, n_rows = self._forward(rows, prompt_chunks)
                sampling = [decode[i] if i < n_rows else chunks[i - n_rows][0] for i in order]
                params = SamplingBatch.build([self._row_params(seq) for seq in sampling], pin=self._cuda)
                self._prepare_penalty(sampling)
                tokens = self._sample(logits, params, sampling) if sampling else []
        except DeviceLost:
            raise  # the device is broken for good: the engine dies, the worker restarts
        except PureInferError as exc:  # OOM or a model failure: these requests fail, the engine goes on
            failure = detached(exc)
        if failure is not None:  # outside the except block: the failed call's frames are gone
            free_device_cache()
            for seq, _ in plan.work:
                self._scheduler.finish(seq)
                seq.channel.fail(failure)
            return
        self.steps += 1
        for seq, n in plan.work:
            seq.n_cached += n
        # 3. Hand out the new tokens.
        for seq, token in zip(sampling, tokens, strict=True):
            seq.tokens.append(token)
            state: _SeqState = seq.state
            step = state.output.add(token)
            seq.channel.push(step.text, token, step.finish_reason)
            if step.finish_reason is not None:
                self._scheduler.finish(seq)

    def _forward(self, rows: list[DecodeRow], chunks: list[PrefillChunk]) -> tuple[torch.Tensor, list[int], int]:
        """The eager step: logits of the sampled rows, their order, and the number of decode rows."""
        assert self._kv is not None
        host, layout = build_step(rows, chunks, self._kv, pin=self._cuda)
        # Zero what this step may read before it writes anything (kvcache.py: never read garbage).
        self._kv.ensure_clean(max([layout.batch.decode_len, *(c.start + len(c.tokens) for c in chunks)]))
        inputs = place(layout, host.to(self.device, non_blocking=True))
        out = self.model(
            input_ids=inputs.input_ids,
            position_ids=inputs.position_ids,
            attention_mask=no_masks(self.model.config),
            use_cache=False,
            logits_to_keep=inputs.logits_index,
            pureinfer_step=inputs.batch,
        )
        return out.logits[0], layout.sample_order, layout.batch.n_decode

    def _decode_forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, step: StepBatch) -> torch.Tensor:
        """The graph-captured step: decode rows only, logits of every row."""
        return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=no_masks(self.model.config),
                          use_cache=False, logits_to_keep=0, pureinfer_step=step).logits

    def _sample(self, logits: torch.Tensor, params: SamplingBatch, seqs: list[Sequence]) -> list[int]:
        seen = None
        slots = None
        if params.any_penalty and self._seen is not None:
            slots = torch.tensor([seq.kv for seq in seqs], device=self.device)
            seen = self._seen[slots]
        tokens = sample(logits, params, self._eos_tensor, seen=seen, n_valid=self._n_valid)
        if slots is not None and self._seen is not None:
            self._seen[slots, tokens] = True
        return tokens.tolist()

    def _prepare_penalty(self, seqs: list[Sequence]) -> None:
        """A request with a repetition penalty: its slot's row of the mask holds its prompt ids."""
        for seq in seqs:
            state: _SeqState = seq.state
            if seq.request.params.repetition_penalty == 1.0 or state.penalized:
                continue
            if self._seen is None:
                assert self._kv is not None
                rows = self.model.get_output_embeddings().weight.shape[0]
                self._seen = torch.zeros(self._kv.slots + 1, rows, dtype=torch.bool, device=self.device)
            row = self._seen[seq.kv]
            row.zero_()
            row[torch.tensor(seq.tokens[: seq.n_prompt], device=self.device)] = True
            state.penalized = True

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
