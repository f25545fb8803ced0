"""The transformers backend: Hugging Face ids, local directories and GGUF files, on CPU or GPU.

Per-sample seeds in batched generation: ``transformers`` samples every row of a batch from one global RNG, so a
sample would depend on the rows it shares a batch with. No library option gives each row its own generator, so
this module does it by hand (:class:`SeededRowSampler`): transformers' temperature and top-k warpers, the top-p
rule of its ``TopPLogitsWarper`` (computed without a full sort, :mod:`.nucleus`) and its min-p warper are applied
in transformers' own order (:func:`sampling_warpers`), then each row draws its next token by inverse-CDF sampling
with a uniform from its own ``torch.Generator`` (seeded with the sample's seed), and generation runs in greedy mode
over scores whose only finite entry is the drawn token. This is exact sampling from the warped distribution (the
same distribution ``do_sample=True`` samples from) with one independent, reproducible random stream per sample.

The K samples of a prompt are K rows of the batch (the prompt repeated, as ``num_return_sequences`` does), and
rows of several prompts share a batch (left padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from divtrace.errors import ModelLoadError
from divtrace.generate.backends.base import TokenizerRendering
from divtrace.generate.backends.nucleus import NucleusFilter
from divtrace.generate.backends.options import TransformersOptions
from divtrace.generate.models import (
    ResolvedAdapter,
    ResolvedModel,
    resolve_adapter,
    resolve_model,
    tokenizer_source,
)
from divtrace.generate.params import SamplingParams
from divtrace.generate.protocol import Completion, GenerationRequest
from divtrace.generate.stops import cut_at_stop
from divtrace.progress import TOKENS, ProgressSink, emit

if TYPE_CHECKING:
    import torch
    from transformers import LogitsProcessorList

#: Sampling-related keys of a model's own generation_config that divtrace does NOT apply (recorded when set).
_MODEL_DEFAULT_KEYS = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
)


class SeededRowSampler:
    """A logits processor that samples each row's next token with that row's own random stream.

    Args:
        uniforms: ``[rows, max_new_tokens]`` float64 uniforms in [0, 1), row ``r`` drawn from a generator seeded
            with row ``r``'s sample seed.
        warpers: transformers' temperature / top-k / top-p / min-p warpers, in transformers' own order
            (:func:`sampling_warpers`).
        prompt_length: the (padded) prompt length, to know the step from ``input_ids``.

    Returns (when called) scores that are 0 at the drawn token and -inf elsewhere, so greedy selection picks it.
    """

    def __init__(self, uniforms: torch.Tensor, warpers: LogitsProcessorList, prompt_length: int) -> None:
        self.uniforms = uniforms
        self.warpers = warpers
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        step = input_ids.shape[1] - self.prompt_length
        warped = self.warpers(input_ids, scores.float())
        cdf = torch.softmax(warped, dim=-1).cumsum_(dim=-1)
        # Inverse CDF: the first token whose cumulative probability exceeds u * total. Tokens with probability 0
        # (filtered by top-k/top-p/min-p) never come first, because their cumulative value equals their predecessor's.
        threshold = (self.uniforms[:, step].to(cdf.device, cdf.dtype) * cdf[:, -1]).unsqueeze(1)
        tokens = torch.searchsorted(cdf, threshold, right=True).clamp_(max=cdf.shape[1] - 1)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, tokens, 0.0)


def sampling_warpers(params: SamplingParams) -> LogitsProcessorList:
    """The warpers ``params`` asks for, in the order transformers' ``_get_logits_processor`` applies them when
    sampling: temperature, top-k (when set), top-p (when below 1; :class:`~.nucleus.NucleusFilter`, the rule of
    ``TopPLogitsWarper`` without a full sort), min-p (``MinPLogitsWarper``, when set). Each keeps at least one
    token, as transformers' do when not beam searching (``min_tokens_to_keep=1``)."""
    from transformers import LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper

    warpers = LogitsProcessorList([TemperatureLogitsWarper(params.temperature)])
    if params.top_k is not None:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(NucleusFilter(params.top_p))
    if params.min_p is not None:
        warpers.append(MinPLogitsWarper(params.min_p))  # after temperature, as transformers applies it
    return warpers


class StepReport:
    """A logits processor that changes nothing and reports the decoding steps of one batch to ``progress``: tokens
    of the call's budget, ``before`` plus ``rows`` per step taken, out of ``total``."""

    def __init__(self, progress: ProgressSink, before: int, rows: int, total: int) -> None:
        self.progress, self.before, self.rows, self.total = progress, before, rows, total
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps += 1  # called once per new token of every row
        emit(self.progress, self.before + self.steps * self.rows, self.total, TOKENS)
        return scores


#: How this backend seeds samples, recorded on every sample (part of its key).
SEEDING = "per-sample torch.Generator(sample_seed), inverse-CDF draw after transformers' warpers"


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu`` (the backend's device when none is given)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    """``bfloat16`` on a GPU that supports it, else ``float32`` (CPU bf16 matmuls are slow on most CPUs)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def adapter_settings() -> dict[str, Any]:
    """What the sampling of a checkpoint with an adapter records on this backend: the adapter was merged into the
    weights, with this peft."""
    from divtrace.generate.adapters import peft_version

    return {"adapter_merged": True, "peft_version": peft_version()}


class TransformersGenerator(TokenizerRendering):
    """Sample from a causal LM with transformers.

    Args:
        model: a model reference (``quickstart:NAME``, hub id, local directory, ``.gguf`` file).
        options: the backend's settings (:class:`~.options.TransformersOptions`: revision, adapter, device, dtype,
            batch_size, ignore_eos, threads); None: every default. Decided here, once loaded, when not given: the
            device (:func:`default_device`, ``cuda`` when torch sees a GPU) and the dtype (:func:`default_dtype`,
            by device); both are recorded on every sample. ``threads`` sets torch's CPU threads for the process.

    An ``adapter`` is applied on the loaded base with peft and merged into its weights
    (:func:`~divtrace.generate.adapters.merge_adapter`), so it samples at the base's speed; the adapter's
    identity is part of ``model_ref``, and ``adapter_merged`` and peft's version are recorded with the sampling.
    The tokenizer (and its chat template) is the adapter's when its directory ships one, else the base's.
    """

    backend = "transformers"

    def __init__(self, model: str, options: TransformersOptions | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.options = options if options is not None else TransformersOptions()
        if self.options.threads is not None:
            torch.set_num_threads(self.options.threads)
        self.device = self.options.device or default_device()
        self.dtype = self.options.dtype or default_dtype(self.device)
        revision = self.options.revision
        self.resolved: ResolvedModel = resolve_model(model, revision)
        self.adapter: ResolvedAdapter | None = resolve_adapter(self.options.adapter) if self.options.adapter else None
        try:
            tokenizer, tokenizer_revision = tokenizer_source(self.resolved, self.adapter)
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer, revision=tokenizer_revision)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.resolved.load_path, revision=revision, dtype=getattr(torch, self.dtype)
            )
            self.model.to(self.device)
        except Exception as err:
            raise ModelLoadError(
                f"cannot load model {model!r} with transformers ({type(err).__name__}: {err}). Give a hub id "
                "(needs the hub or a cached copy), a local model directory, a .gguf file or a quickstart: model."
            ) from err
        if self.adapter is not None:
            from divtrace.generate.adapters import merge_adapter

            self.model = merge_adapter(self.model, self.adapter)
        self.model.eval()
        commit = getattr(self.model.config, "_commit_hash", None)
        if commit and not self.resolved.is_local:
            self.resolved.identity["commit"] = commit
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        own = self.model.generation_config
        self.model_defaults_not_applied = {
            key: getattr(own, key) for key in _MODEL_DEFAULT_KEYS if getattr(own, key, None) not in (None, False)
        }
        eos = own.eos_token_id if own.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = sorted({eos} if isinstance(eos, int) else set(eos or []))
        # A clean generation config: only what divtrace sets applies (no repetition penalty etc. from the model).
        self.model.generation_config = GenerationConfig(
            eos_token_id=self.eos_ids or None,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=own.bos_token_id,
        )

    def model_ref(self) -> dict[str, Any]:
        """The identity of the loaded weights (see :class:`~divtrace.generate.models.ResolvedModel`), with the
        adapter's (:data:`~divtrace.generate.models.ADAPTER_REF_KEYS`) when one is applied."""
        return {**self.resolved.identity, **(self.adapter.identity if self.adapter is not None else {})}

    def check(self, params: SamplingParams) -> dict[str, Any]:
        """The effective sampling parameters; transformers can honour every :class:`SamplingParams` field. With an
        adapter, also ``adapter_merged`` (True) and ``peft_version``; without one, neither key."""
        import torch
        import transformers

        return {
            **(adapter_settings() if self.adapter is not None else {}),
            **params.as_record(),
            "backend": self.backend,
            "backend_version": transformers.__version__,
            "torch_version": torch.__version__,
            "device": self.device,
            "dtype": self.dtype,
            "ignore_eos": self.options.ignore_eos,
            "seeding": SEEDING,
            "model_generation_defaults_not_applied": self.model_defaults_not_applied,
        }

    def _draw(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress: ProgressSink | None
    ) -> list[list[Completion]]:
        """One completion per seed of each request, in order; rows of all requests are batched together.
        Progress: tokens of the budget, per decoding step of each batch (its rows times the steps taken)."""
        rows = [(r, i) for r, request in enumerate(requests) for i in range(len(request.seeds))]
        results: list[list[Completion | None]] = [[None] * len(request.seeds) for request in requests]
        budget = params.max_new_tokens
        total = len(rows) * budget
        emit(progress, 0, total, TOKENS)
        for start in range(0, len(rows), self.options.batch_size):
            batch = rows[start : start + self.options.batch_size]
            texts = [requests[r].rendered for r, _ in batch]
            seeds = [requests[r].seeds[i] for r, i in batch]
            steps = StepReport(progress, start * budget, len(batch), total) if progress is not None else None
            for (r, i), completion in zip(batch, self._generate_batch(texts, seeds, params, steps), strict=True):
                results[r][i] = completion
            emit(progress, (start + len(batch)) * budget, total, TOKENS)
        return [[c for c in per_request if c is not None] for per_request in results]

    def _generate_batch(
        self,
        texts: list[str],
        seeds: list[int],
        params: SamplingParams,
        steps: StepReport | None = None,
    ) -> list[Completion]:
        """The completions of one batch; ``steps``, when given, reports each decoding step."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        # Chat templates already contain the special tokens; plain prompts get the tokenizer's usual BOS.
        add_special = not any(self.tokenizer.bos_token and t.startswith(self.tokenizer.bos_token) for t in texts)
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        encoded = encoded.to(self.device)
        prompt_length = encoded["input_ids"].shape[1]
        uniforms = torch.stack(
            [
                torch.rand(params.max_new_tokens, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
                for seed in seeds
            ]
        )
        warpers = sampling_warpers(params)
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=params.max_new_tokens if self.options.ignore_eos else None,
            eos_token_id=self.eos_ids or None,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
        )
        processors = LogitsProcessorList([SeededRowSampler(uniforms, warpers, prompt_length)])
        if steps is not None:
            processors.insert(0, steps)
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                generation_config=config,
                logits_processor=processors,
                tokenizer=self.tokenizer if params.stop else None,
            )
        return [
            self._completion(row[prompt_length:].tolist(), seed, params)
            for row, seed in zip(output, seeds, strict=True)
        ]

    def _completion(self, new_ids: list[int], seed: int, params: SamplingParams) -> Completion:
        """Decode one row: cut at end-of-sequence (kept in the token count) or padding, then at a stop string."""
        ends = set(self.eos_ids) if not self.options.ignore_eos else set()
        length, hit_eos = len(new_ids), False
        for position, token in enumerate(new_ids):
            if token in ends:
                length, hit_eos = position + 1, True
                break
        kept = new_ids[: length - 1] if hit_eos else new_ids[:length]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        cut = cut_at_stop(text, params.stop)
        if cut is not None:
            text = cut
            # Rows stopped by a stop string are padded after it: count only the tokens before the padding.
            pad = self.tokenizer.pad_token_id
            while kept and kept[-1] == pad and pad not in ends:
                kept.pop()
            length = len(kept)
        finish = "stop" if hit_eos or cut is not None else "length"
        return Completion(text=text, finish_reason=finish, output_tokens=length, seed=seed)

    def close(self) -> None:
        """Release the model (the next generator may need the memory)."""
        self.model = None
