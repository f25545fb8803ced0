"""The OpenAI-compatible backend: sample from a server that speaks the OpenAI API (vLLM, SGLang, llama.cpp
server, TGI, ``transformers serve``, llm-katan...).

Endpoints:
- ``completions`` (``/v1/completions``): the prompt is rendered here (``render`` with the ``tokenizer`` option's
  chat template, or the plain prompt without one) and sent as text, so the record's ``rendered_prompt`` is exactly
  what the server tokenizes.
- ``chat`` (``/v1/chat/completions``): the messages are sent and the *server* applies its chat template; the
  record's rendered prompt is a readable role-tagged rendering, not the server's exact text.

Samples, ``n`` and seeds: by default (``n_mode="separate"``) every sample is its own request seeded with its own
recorded seed, so any sample can be drawn again from its record (on a server that honours seeds). With
``n_mode="auto"`` or ``"native"`` the K samples of a prompt are one request (``n=K``) seeded with the prompt's first
sample seed, and every completion records that seed (faster; the server draws the K choices from it). Servers that
ignore ``n`` (they answer with fewer choices: llm-katan and ``transformers serve`` answer one choice for ``n=3``)
are detected, remembered for the rest of the generator's life, and sampled one request per sample.
Nothing ever returns fewer or more completions than seeds.

Requests go through the maintained ``openai`` package (``AsyncOpenAI``): bounded concurrency (an
``asyncio.Semaphore`` of ``max_concurrency`` requests in flight), a per-request ``timeout``, and the package's own
retries (``max_retries``) with exponential backoff and jitter (0.5 s doubling up to 8 s, or the server's
``Retry-After``) on connection errors, timeouts, 408, 409, 429 and 5xx. A request that still fails raises
:class:`OpenAIServerError` (a :class:`~divtrace.errors.DivtraceError`) naming the server, status and attempts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from divtrace.errors import DivtraceError, ModelLoadError
from divtrace.generate.backends.base import GeneratorBase
from divtrace.generate.backends.options import OpenAIOptions
from divtrace.generate.params import SamplingParams, UnsupportedSamplingError
from divtrace.generate.protocol import Completion, GenerationRequest
from divtrace.generate.rendering import RenderedInput, chat_messages, render_input
from divtrace.generate.stops import cut_at_stop
from divtrace.generate.thinking import EMPTY_THINKING_BLOCK, THINK_CLOSE, THINK_OPEN, ThinkingMode, apply_thinking
from divtrace.openai_calls import OpenAIServerError, gather_or_cancel, run_sync, server_error
from divtrace.progress import TOKENS, ProgressSink, emit

#: Server finish reasons that mean "ended by end-of-sequence or a stop string" / "ran out of ``max_tokens``".
STOP_REASONS = frozenset({"stop", "eos", "eos_token", "stop_sequence", "end_turn"})
LENGTH_REASONS = frozenset({"length", "max_tokens", "model_length"})
#: Fields of a ``/v1/models`` entry left out of ``model_ref``: they change from call to call (``created`` is the
#: time of the request on vLLM and llm-katan) and would change every sample key.
VOLATILE_MODEL_FIELDS = frozenset({"id", "object", "created", "permission"})
#: ``extra_body`` that vLLM and SGLang accept, sent with ``extra_sampling_params=True`` after ``top_k`` (-1 = off):
#: neutral values for the filters a server could otherwise take from the model's generation_config.json. ``min_p``
#: is sent as set when it is; these neutral values otherwise (so records made before divtrace knew min_p match).
NEUTRAL_EXTRA_SAMPLING = {"min_p": 0.0, "repetition_penalty": 1.0}
#: Sampling fields of :class:`SamplingParams` without a field in the OpenAI API: sent in ``extra_body`` only.
BEYOND_OPENAI = ("top_k", "min_p")
#: ``extra_body`` of a chat request whose last message is an assistant pre-fill (vLLM and SGLang).
PREFILL_EXTRA_BODY = {"continue_final_message": True, "add_generation_prompt": False}
#: The tiny request ``check`` sends to learn whether the server honours ``n``.
PROBE_PROMPT = "Hello"


@dataclass
class _Run:
    """State shared by the requests of one ``generate`` call (lives in that call's event loop)."""

    client: openai.AsyncOpenAI
    params: SamplingParams
    semaphore: asyncio.Semaphore
    probe_lock: asyncio.Lock
    progress: ProgressSink | None
    #: Samples of the call (each counts ``params.max_new_tokens`` tokens of the budget when it arrives).
    samples: int = 0
    extra_body: dict[str, Any] = field(default_factory=dict)
    drawn: int = 0

    def advance(self, samples: int) -> None:
        """``samples`` more arrived: report the call's budget tokens drawn so far."""
        if samples:
            self.drawn += samples
            budget = self.params.max_new_tokens
            emit(self.progress, self.drawn * budget, self.samples * budget, TOKENS)


def readable_chat(messages: Sequence[dict[str, str]]) -> str:
    """A readable rendering of chat messages: ``<|role|>`` then the content, one block per message.

    It ends with an open ``<|assistant|>`` turn: after the generation prompt, or inside the final assistant message
    when one is pre-filled. It is what a record stores as the rendered prompt of a chat request, since the exact
    text is rendered by the server.
    """
    blocks = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    if messages and messages[-1]["role"] == "assistant":
        blocks[-1] = f"<|assistant|>\n{messages[-1]['content']}"
    else:
        blocks.append("<|assistant|>\n")
    return "".join(blocks)


class OpenAIGenerator(GeneratorBase):
    """Sample from a model served behind an OpenAI-compatible API.

    Args:
        model: the served model name (the ``model`` field of every request, vLLM's ``--served-model-name``).
        options: the settings below (:class:`~.options.OpenAIOptions`, where their defaults and constraints are
            stated); None: every default.

    Options:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is appended to a bare host).
        api_key: sent as ``Authorization: Bearer``; default ``$OPENAI_API_KEY``, else ``EMPTY`` (local servers).
        endpoint: ``completions`` (text prompt rendered here) or ``chat`` (messages rendered by the server).
        tokenizer: a model reference (hub id, local directory, ``quickstart:NAME``) whose chat template renders
            prompts for the ``completions`` endpoint; without one, prompts are sent as plain text.
        max_concurrency: requests in flight at once.
        max_retries: retries of a failed request (connection error, timeout, 408, 409, 429, 5xx) before giving up.
        timeout: seconds one request may take (connect, send, wait for the whole answer).
        n_mode: ``separate`` (default: one request per sample, each with its own seed), ``auto`` (native ``n``
            when the server honours it, checked by a probe, else one request per sample) or ``native`` (always
            ``n=K``; a server that ignores ``n`` is an error).
        extra_sampling_params: send vLLM/SGLang sampling fields in ``extra_body``: ``top_k`` (-1 when off),
            ``min_p`` (0 when off) and ``repetition_penalty=1``, so the server's own defaults (vLLM applies the
            model's generation_config.json unless started with ``--generation-config vllm``) cannot change the
            sampling. Needed for ``top_k`` and ``min_p``; servers that reject unknown fields (``transformers
            serve``) refuse it.

    Thinking ``suppressed`` on the ``chat`` endpoint appends an assistant message holding the empty thinking block
    and sends ``continue_final_message=True, add_generation_prompt=False`` in ``extra_body``, so the model continues
    after the block. Only servers that honour these fields (vLLM, SGLang) do that; a server that rejects them
    answers an error, and one that silently ignores them (llm-katan) renders a closed assistant turn and a new
    generation prompt instead: on other servers, suppressing thinking is the user's responsibility (use the
    ``completions`` endpoint with a ``tokenizer``, where the pre-fill is part of the prompt text).

    What the server does with the fields it receives cannot be seen from here; the parameters sent are recorded,
    not verified. Known cases: vLLM and SGLang honour ``seed`` per request; ``transformers serve`` seeds one global
    generator (only serial requests are reproducible) and samples greedily, whatever the temperature, unless the
    model's generation_config.json sets ``do_sample``; servers built on ``model.generate`` (transformers serve,
    llm-katan) add transformers' default ``top_k=50`` when the model's config leaves it unset; llm-katan ignores
    ``n``, ``seed``, ``top_p`` and ``stop`` and always reports ``finish_reason="stop"``. Stop strings are cut from
    the returned text in any case (the text before the first stop string has the same distribution whether the
    server or divtrace cuts it); a sample cut here records ``finish_reason="stop"`` and no token count.
    """

    backend = "openai"

    def __init__(self, model: str, options: OpenAIOptions | None = None) -> None:
        if not model:
            raise DivtraceError("the openai backend needs the served model name (model=...)")
        self.model = model
        self.options = options if options is not None else OpenAIOptions()
        self._api_key = self.options.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._tokenizer: Any | None = None
        #: Whether the server honours ``n``: None until known (auto), set by the probe or the first n>1 answer.
        self._n_native: bool | None = {"auto": None, "native": None, "separate": False}[self.options.n_mode]
        #: How ``n`` support was learnt (shown by :meth:`n_support`).
        self.n_note = "n not used (n_mode=separate)" if self.options.n_mode == "separate" else "not probed yet"
        self._server_model: dict[str, Any] | None = None
        self._server_model_fetched = False
        self._closed = False

    @property
    def base_url(self) -> str:
        """The API root, normalized (``/v1`` appended to a bare host) by :class:`~.options.OpenAIOptions`."""
        return self.options.base_url

    # ----- identity and effective parameters -----

    def model_ref(self) -> dict[str, Any]:
        """``{"id": served model name, "base_url": ...}`` plus the stable fields ``/v1/models`` reports for it.

        Fields such as ``root``, ``parent``, ``owned_by``, ``max_model_len`` or llama.cpp's ``meta`` are kept;
        ``created``, ``object`` and ``permission`` are left out because they change between calls. A server
        without ``/v1/models``, or that does not list the model, adds nothing.
        """
        ref: dict[str, Any] = {"id": self.model, "base_url": self.base_url}
        ref.update(self.server_model() or {})
        return ref

    def server_model(self) -> dict[str, Any] | None:
        """The stable fields of the served model's ``/v1/models`` entry, or None (fetched once, then cached).

        Raises OpenAIServerError when the server cannot be reached; an error status (no such route, a server
        error after the retries) means no metadata.
        """
        self._ensure_open()
        if not self._server_model_fetched:
            self._server_model = run_sync(self._fetch_server_model)
            self._server_model_fetched = True
        return dict(self._server_model) if self._server_model is not None else None

    def check(self, params: SamplingParams) -> dict[str, Any]:
        """The effective sampling parameters recorded on each sample, after learning how the server treats ``n``.

        Contract: the result holds ``params`` (temperature, top_p, top_k, min_p when set, max_new_tokens, stop,
        seed, k: :meth:`SamplingParams.as_record`) plus ``backend`` ("openai"), ``openai_version`` (the openai
        package), ``base_url``, ``served_model``, ``endpoint``, ``tokenizer``, ``n_handling`` (``native``,
        ``separate`` or ``single``), ``seeding`` (how seeds are applied), ``extra_body`` (the sampling fields sent
        beyond the OpenAI API: empty, or with ``extra_sampling_params`` ``top_k`` (-1: off), ``min_p`` (0: off)
        and ``repetition_penalty`` 1) and ``server_model`` (the ``/v1/models`` metadata, or None). With
        ``n_mode`` auto or native and ``k > 1`` it sends one tiny probe request (``n=2``, one token) to see
        whether ``n`` is honoured.

        Raises UnsupportedSamplingError for what the OpenAI API cannot carry as asked: ``top_k`` or ``min_p``
        without ``extra_sampling_params=True``; ``n_mode="native"`` on a server that ignores ``n``. Raises
        OpenAIServerError when the server fails the probe (unreachable, or rejecting the request).
        """
        self._ensure_open()
        self._check_supported(params)
        if params.k > 1 and self._n_native is None:
            run_sync(lambda: self._probe_n(params))
        if params.k == 1:
            handling = "single"
            seeding = "one request per sample, seeded with the sample's own seed"
        elif self._n_native:
            handling = "native"
            seeding = (
                "one request per prompt with n=K, seeded with the prompt's first sample seed; every completion "
                "records that seed (the server draws the K choices from it)"
            )
        else:
            handling = "separate"
            seeding = "one request per sample, seeded with the sample's own seed"
        return {
            **params.as_record(),
            "backend": self.backend,
            "openai_version": openai.__version__,
            "base_url": self.base_url,
            "served_model": self.model,
            "endpoint": self.options.endpoint,
            "tokenizer": self.options.tokenizer,
            "n_handling": handling,
            "seeding": seeding + "; whether the server honours the request seed is up to the server",
            "extra_body": self._sampling_extra_body(params),
            "server_model": self.server_model(),
        }

    def n_support(self) -> tuple[bool | None, str]:
        """Whether the server honours ``n`` (None: not known yet) and how that was learnt."""
        return self._n_native, self.n_note

    # ----- rendering -----

    def _render(
        self, prompt: str, system_prompt: str | None, chat_template: bool | None, thinking: ThinkingMode
    ) -> RenderedInput:
        """The model input for ``prompt`` and, when a chat template applies, the chat messages.

        - ``completions``: the exact prompt text, rendered by
          :func:`~divtrace.generate.rendering.render_prompt` with the ``tokenizer`` option's template; without a
          tokenizer the plain prompt (``chat_template`` None means off, True is an error).
        - ``chat``: the messages the server renders (plus an assistant pre-fill holding the empty thinking block
          when thinking is suppressed) and their :func:`readable_chat` rendering; ``chat_template=False`` is an
          error, since the server always applies its template.
        """
        if self.options.endpoint == "chat":
            if chat_template is False:
                raise DivtraceError(
                    "the chat endpoint always applies the server's chat template; "
                    "use endpoint='completions' to send plain prompts"
                )
            messages = chat_messages(prompt, system_prompt)
            rendered = apply_thinking(readable_chat(messages), thinking)
            if thinking is ThinkingMode.suppressed:
                messages = (*messages, {"role": "assistant", "content": EMPTY_THINKING_BLOCK})
            return rendered, messages
        tokenizer = self._load_tokenizer()
        if tokenizer is None:
            if chat_template:
                raise DivtraceError(
                    "chat template requested on the completions endpoint without a tokenizer: pass tokenizer=... "
                    "(the served model's hub id or directory), or use endpoint='chat'"
                )
            chat_template = False
        return render_input(
            tokenizer, prompt, system_prompt=system_prompt, chat_template=chat_template, thinking=thinking
        )

    def _load_tokenizer(self) -> Any | None:
        if self.options.tokenizer is None:
            return None
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from divtrace.generate.models import resolve_model

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.options.tokenizer).load_path)
            except ModelLoadError:
                raise
            except Exception as err:
                raise ModelLoadError(
                    f"cannot load tokenizer {self.options.tokenizer!r} ({type(err).__name__}: {err})"
                ) from err
        return self._tokenizer

    # ----- generation -----

    def _draw(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress: ProgressSink | None
    ) -> list[list[Completion]]:
        """One :class:`Completion` per seed of each request, in order, drawn over concurrent HTTP requests.

        Synchronous for the caller: the requests run in an event loop of their own (see :func:`run_sync`).
        ``progress`` gets the tokens of the call's budget as samples arrive. Chat requests need ``messages``
        (from :meth:`render`). Raises UnsupportedSamplingError as :meth:`check` does, OpenAIServerError when a
        request fails after its retries (the other requests in flight are cancelled), and DivtraceError when an
        answer cannot be a sample (an unknown finish reason, more choices than asked).
        """
        self._ensure_open()
        self._check_supported(params)
        if self.options.endpoint == "chat":
            missing = [r.prompt_id for r in requests if not r.messages]
            if missing:
                raise DivtraceError(f"chat requests need messages (render with this generator): {missing[:5]}")
        if not requests:
            return []
        return run_sync(lambda: self._generate_async(requests, params, progress))

    async def _generate_async(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress: ProgressSink | None
    ) -> list[list[Completion]]:
        async with self._client() as client:
            run = _Run(
                client=client,
                params=params,
                semaphore=asyncio.Semaphore(self.options.max_concurrency),
                probe_lock=asyncio.Lock(),
                progress=progress,
                samples=sum(len(request.seeds) for request in requests),
                extra_body=self._sampling_extra_body(params),
            )
            return await gather_or_cancel([self._draw_request(run, request) for request in requests])

    async def _draw_request(self, run: _Run, request: GenerationRequest) -> list[Completion]:
        """The completions of one request: native ``n`` when the server honours it, else one request each."""
        k = len(request.seeds)
        if k == 0:
            return []
        if k > 1 and self._n_native is None:
            async with run.probe_lock:  # one n>1 request at a time until support is known
                if self._n_native is None:
                    return await self._draw_learning_n(run, request)
        if k > 1 and self._n_native:
            drawn = await self._draw_native(run, request)
            if drawn is not None:
                return drawn
        return await self._draw_separate(run, request)

    async def _draw_learning_n(self, run: _Run, request: GenerationRequest) -> list[Completion]:
        """The first ``n=K`` request while ``n`` support is unknown: its answer settles it for the run.

        A short answer means ``n`` is ignored; a 400/422 rejection (auto mode) is taken as "no ``n``" once the same
        samples drawn one request each succeed (otherwise the request itself was bad and its error is raised).
        """
        try:
            drawn = await self._draw_native(run, request)
        except OpenAIServerError as err:
            if self.options.n_mode != "auto" or err.status_code not in (400, 422):
                raise
            completions = await self._draw_separate(run, request)
            self._learn_n(False, f"server rejected n={len(request.seeds)} (HTTP {err.status_code})")
            return completions
        return drawn if drawn is not None else await self._draw_separate(run, request)

    async def _draw_native(self, run: _Run, request: GenerationRequest) -> list[Completion] | None:
        """All samples in one ``n=K`` request; None when the server ignored ``n`` (then remembered)."""
        k = len(request.seeds)
        seed = request.seeds[0]
        async with run.semaphore:
            response = await self._create(run.client, self._source(request), run.params, run.extra_body, seed, n=k)
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) > k or len({c.index for c in choices}) != len(choices):
            raise DivtraceError(
                f"{self.base_url} answered {len(choices)} choices (indices {[c.index for c in choices]}) "
                f"for n={k}: cannot map them to samples"
            )
        if len(choices) < k:
            note = f"server ignored n: {len(choices)} choice(s) for n={k}"
            if self.options.n_mode == "native":
                raise UnsupportedSamplingError(
                    f"{self.base_url} ignores n ({note}); use n_mode='auto' or 'separate' with this server"
                )
            self._learn_n(False, note)
            return None
        self._learn_n(True, f"server honoured n={k}")
        run.advance(k)
        # usage sums the K choices: no per-sample token count.
        return [self._completion(choice, seed, run.params, None) for choice in choices]

    async def _draw_separate(self, run: _Run, request: GenerationRequest) -> list[Completion]:
        source = self._source(request)

        async def one(seed: int) -> Completion:
            async with run.semaphore:
                response = await self._create(run.client, source, run.params, run.extra_body, seed, n=1)
            if len(response.choices) != 1:
                raise DivtraceError(f"{self.base_url} answered {len(response.choices)} choices for one sample")
            completion = self._completion(response.choices[0], seed, run.params, _usage_tokens(response))
            run.advance(1)
            return completion

        return await gather_or_cancel([one(seed) for seed in request.seeds])

    def _learn_n(self, honoured: bool, note: str) -> None:
        if self.options.n_mode == "auto" and self._n_native is not False:
            self._n_native = honoured
            self.n_note = note
        elif self.options.n_mode == "native" and honoured:
            self._n_native = True
            self.n_note = note

    async def _probe_n(self, params: SamplingParams) -> None:
        """Send one ``n=2``, one-token request and learn from the answer whether the server honours ``n``."""
        source: Any = (
            PROBE_PROMPT if self.options.endpoint == "completions" else [{"role": "user", "content": PROBE_PROMPT}]
        )
        probe = params.model_copy(update={"max_new_tokens": 1, "stop": ()})
        extra = self._sampling_extra_body(params)
        async with self._client() as client:
            try:
                response = await self._create(client, source, probe, extra, params.seed, n=2)
            except OpenAIServerError as err:
                if self.options.n_mode != "auto" or err.status_code not in (400, 422):
                    raise
                await self._create(client, source, probe, extra, params.seed, n=1)
                self._learn_n(False, f"probe: server rejected n=2 (HTTP {err.status_code})")
                return
        count = len(response.choices)
        if count > 2:
            raise DivtraceError(f"{self.base_url} answered {count} choices for n=2")
        if count < 2:
            if self.options.n_mode == "native":
                raise UnsupportedSamplingError(
                    f"{self.base_url} ignores n (probe: {count} choice for n=2); "
                    "use n_mode='auto' or 'separate' with this server"
                )
            self._learn_n(False, f"probe: server ignored n ({count} choice for n=2)")
        else:
            self._learn_n(True, "probe: server honoured n=2")

    # ----- HTTP -----

    def _client(self) -> openai.AsyncOpenAI:
        """A fresh async client for one event loop (connections are bound to the loop that opened them)."""
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            max_retries=self.options.max_retries,
            timeout=self.options.timeout,
        )

    def _source(self, request: GenerationRequest) -> Any:
        return request.rendered if self.options.endpoint == "completions" else [dict(m) for m in request.messages or ()]

    def _sampling_extra_body(self, params: SamplingParams) -> dict[str, Any]:
        """The sampling fields sent in ``extra_body``: none without ``extra_sampling_params``; else ``top_k``
        (-1: off), ``min_p`` as set (0: off) and ``repetition_penalty`` 1 (:data:`NEUTRAL_EXTRA_SAMPLING`)."""
        if not self.options.extra_sampling_params:
            return {}
        body = {"top_k": params.top_k if params.top_k is not None else -1, **NEUTRAL_EXTRA_SAMPLING}
        if params.min_p is not None:
            body["min_p"] = params.min_p
        return body

    def _check_supported(self, params: SamplingParams) -> None:
        """Raise UnsupportedSamplingError when ``params`` sets a field the OpenAI API has none for (top_k, min_p)
        and ``extra_sampling_params`` is off, so it could not be sent."""
        beyond = beyond_openai(params)
        if beyond and not self.options.extra_sampling_params:
            them = "it" if len(beyond) == 1 else "them"
            raise UnsupportedSamplingError(
                f"{' and '.join(beyond)} {'has' if len(beyond) == 1 else 'have'} no field in the OpenAI API; with "
                f"a vLLM or SGLang server pass extra_sampling_params=True (divtrace generate: "
                f"--extra-sampling-params) to send {them} in extra_body, or drop {them}"
            )

    async def _create(
        self, client: openai.AsyncOpenAI, source: Any, params: SamplingParams, extra: dict[str, Any], seed: int, n: int
    ) -> Any:
        """One completions or chat request; errors left after the client's retries become OpenAIServerError."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": seed,
        }
        if n > 1:
            kwargs["n"] = n
        if params.stop:
            kwargs["stop"] = list(params.stop)
        extra_body = dict(extra)
        try:
            if self.options.endpoint == "completions":
                return await client.completions.create(prompt=source, extra_body=extra_body or None, **kwargs)
            if source and source[-1]["role"] == "assistant":
                extra_body.update(PREFILL_EXTRA_BODY)
            return await client.chat.completions.create(messages=source, extra_body=extra_body or None, **kwargs)
        except (openai.APIStatusError, openai.APIConnectionError) as err:
            raise self._server_error(err, extra_body, params) from err

    def _server_error(
        self,
        err: openai.APIStatusError | openai.APIConnectionError,
        extra_body: dict[str, Any],
        params: SamplingParams | None = None,
    ) -> OpenAIServerError:
        """``err`` as an OpenAIServerError, with a hint for the statuses this backend can explain: a 400/422 to a
        request with ``extra_body`` names every field it carried and what to change (the settings of ``params``
        that need those fields, such as ``min_p``, first)."""
        status = err.status_code if isinstance(err, openai.APIStatusError) else None
        hint = ""
        if status == 404 and self.options.endpoint == "completions":
            hint = " (the server may not offer the legacy completions endpoint: try endpoint='chat')"
        elif status in (400, 422) and extra_body:
            hint = self._extra_body_hint(extra_body, params)
        return server_error(
            err,
            OpenAIServerError,
            base_url=self.base_url,
            route="/completions" if self.options.endpoint == "completions" else "/chat/completions",
            max_retries=self.options.max_retries,
            timeout=self.options.timeout,
            hint=hint,
        )

    def _extra_body_hint(self, extra_body: dict[str, Any], params: SamplingParams | None) -> str:
        """Why a server may have refused a request carrying ``extra_body`` (fields beyond the OpenAI API that vLLM
        and SGLang accept), and what to change: drop the settings that need them, or extra_sampling_params, or
        the suppressed thinking that needs continue_final_message."""
        sent = ", ".join(f"{key}={value!r}" for key, value in extra_body.items())
        advice = []
        asked = beyond_openai(params) if params is not None else []
        if asked:
            them = "it" if len(asked) == 1 else "them"
            advice.append(
                f"{' and '.join(asked)} can only be sent this way: drop {them}, or use a server that takes {them} "
                "(vLLM, SGLang)"
            )
        elif "top_k" in extra_body:
            advice.append("top_k, min_p and repetition_penalty come from extra_sampling_params: turn it off")
        if "continue_final_message" in extra_body:
            advice.append(
                "continue_final_message comes from suppressed thinking on the chat endpoint: use "
                "endpoint='completions' with a tokenizer"
            )
        return f" (the request carried fields beyond the OpenAI API in extra_body: {sent}; {'; '.join(advice)})"

    async def _fetch_server_model(self) -> dict[str, Any] | None:
        async with self._client() as client:
            try:
                page = await client.models.list()
            except openai.APIStatusError:
                return None
            except openai.APIConnectionError as err:
                raise self._server_error(err, {}) from err
        for entry in page.data:
            if entry.id == self.model:
                fields = entry.model_dump(exclude_unset=True)  # what the server sent, no client-side defaults
                return {k: v for k, v in fields.items() if k not in VOLATILE_MODEL_FIELDS}
        return None

    # ----- answers -----

    def _completion(self, choice: Any, seed: int, params: SamplingParams, tokens: int | None) -> Completion:
        text = self._choice_text(choice)
        finish = self._finish_reason(choice.finish_reason)
        cut = cut_at_stop(text, params.stop)
        if cut is not None:  # the server kept the stop string or ignored it: cut here, the count is then unknown
            text, finish, tokens = cut, "stop", None
        return Completion(text=text, finish_reason=finish, output_tokens=tokens, seed=seed)

    def _choice_text(self, choice: Any) -> str:
        """The raw text of a choice; reasoning a server split out (vLLM/SGLang reasoning parsers) is put back."""
        if self.options.endpoint == "completions":
            return choice.text or ""
        message = choice.message
        content = message.content or ""
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{content}"
        return content

    def _finish_reason(self, reason: str | None) -> str:
        if reason in STOP_REASONS:
            return "stop"
        if reason in LENGTH_REASONS:
            return "length"
        raise DivtraceError(
            f"{self.base_url} ended a sample with finish_reason={reason!r}: not a finished sample "
            "(expected stop or length)"
        )

    # ----- lifecycle -----

    def _ensure_open(self) -> None:
        if self._closed:
            raise DivtraceError("this OpenAIGenerator is closed")

    def close(self) -> None:
        """Release the generator: the tokenizer is dropped and later calls raise DivtraceError.

        HTTP clients live only for the duration of each call (one per event loop), so no connection outlives it.
        """
        self._closed = True
        self._tokenizer = None


def beyond_openai(params: SamplingParams) -> list[str]:
    """The settings of ``params`` that the OpenAI API has no field for, as ``NAME=VALUE`` (``top_k`` and
    ``min_p`` when set, :data:`BEYOND_OPENAI`); empty when every setting fits the API."""
    return [f"{name}={value}" for name in BEYOND_OPENAI if (value := getattr(params, name)) is not None]


def _usage_tokens(response: Any) -> int | None:
    """``usage.completion_tokens`` of a one-choice answer (a count summed over n choices is no sample's count)."""
    usage = getattr(response, "usage", None)
    if usage is None or len(response.choices) != 1:
        return None
    tokens = getattr(usage, "completion_tokens", None)
    return int(tokens) if isinstance(tokens, int) else None
