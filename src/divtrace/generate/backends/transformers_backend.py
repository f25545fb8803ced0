"""The transformers backend: Hugging Face ids, local directories and GGUF files, on CPU or GPU.

Per-sample seeds in batched generation: ``transformers`` samples every row of a batch from one global RNG, so a
sample would depend on the rows it shares a batch with. Each row here draws with uniforms from its own
``torch.Generator`` (seeded with the sample's seed), by inverse-CDF sampling from the distribution transformers'
warpers define, and a row that ends leaves the batch (:mod:`.row_decoding`, which decodes with the model's own
forward pass and cache). This is exact sampling from the warped distribution (the same distribution
``do_sample=True`` samples from) with one independent, reproducible random stream per sample.

The K samples of a prompt are K rows of the batch (the prompt repeated, as ``num_return_sequences`` does), and
rows of several prompts share a batch (left padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from divtrace.errors import ModelLoadError
from divtrace.generate.backends.base import TokenizerRendering
from divtrace.generate.backends.onednn_linear import ONEDNN_LINEAR, linear_setting, to_onednn_linear
from divtrace.generate.backends.options import TransformersOptions
from divtrace.generate.backends.row_decoding import RowDraw, decode_rows, sampling_warpers
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
    from transformers import StoppingCriteria

__all__ = ["TransformersGenerator", "sampling_warpers"]

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


class StepReport:
    """Reports the decoding steps of one batch to ``progress`` when called: tokens of the call's budget, ``before``
    plus ``rows`` per step taken, out of ``total``."""

    def __init__(self, progress: ProgressSink, before: int, rows: int, total: int) -> None:
        self.progress, self.before, self.rows, self.total = progress, before, rows, total
        self.steps = 0

    def __call__(self) -> None:
        self.steps += 1  # once per new token of every row (a row that ended still counts: tokens of the budget)
        emit(self.progress, self.before + self.steps * self.rows, self.total, TOKENS)


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
            batch_size, ignore_eos, threads, onednn); None: every default. Decided here, once loaded, when not
            given: the device (:func:`default_device`, ``cuda`` when torch sees a GPU) and the dtype
            (:func:`default_dtype`, by device); both are recorded on every sample. ``threads`` sets torch's CPU
            threads for the process. With ``onednn`` (the default), a float32 model on the CPU computes its linear
            layers with oneDNN (:mod:`.onednn_linear`), recorded as ``linear: onednn`` in the sampling settings.

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
        self._stop_criteria: dict[tuple[str, ...], StoppingCriteria] = {}
        # how the linear layers are computed, when not torch's default
        self.linear = linear_setting(self.options.onednn, self.device, self.dtype)
        if self.linear == ONEDNN_LINEAR:
            to_onednn_linear(self.model)
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
            **({"linear": self.linear} if self.linear else {}),
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
        draw = RowDraw(params)
        stop = self._stop_criterion(params.stop)
        for start in range(0, len(rows), self.options.batch_size):
            batch = rows[start : start + self.options.batch_size]
            texts = [requests[r].rendered for r, _ in batch]
            seeds = [requests[r].seeds[i] for r, i in batch]
            steps = StepReport(progress, start * budget, len(batch), total) if progress is not None else None
            completions = self._generate_batch(texts, seeds, params, draw, stop, steps)
            for (r, i), completion in zip(batch, completions, strict=True):
                results[r][i] = completion
            emit(progress, (start + len(batch)) * budget, total, TOKENS)
        return [[c for c in per_request if c is not None] for per_request in results]

    def _stop_criterion(self, stop: Sequence[str]) -> StoppingCriteria | None:
        """transformers' ``StopStringCriteria`` for ``stop`` with this tokenizer (None without stop strings), built
        once per set of stop strings (it indexes the whole vocabulary: 0.5-1.6 s for gemma-3-270m's)."""
        from transformers import StopStringCriteria

        if not stop:
            return None
        key = tuple(stop)
        if key not in self._stop_criteria:
            self._stop_criteria[key] = StopStringCriteria(self.tokenizer, list(stop))
        return self._stop_criteria[key]

    def _generate_batch(
        self,
        texts: list[str],
        seeds: list[int],
        params: SamplingParams,
        draw: RowDraw,
        stop: StoppingCriteria | None,
        steps: StepReport | None = None,
    ) -> list[Completion]:
        """The completions of one batch (:func:`~.row_decoding.decode_rows`); ``steps``, when given, reports each
        decoding step."""
        import torch

        # Chat templates already contain the special tokens; plain prompts get the tokenizer's usual BOS.
        add_special = not any(self.tokenizer.bos_token and t.startswith(self.tokenizer.bos_token) for t in texts)
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        encoded = encoded.to(self.device)
        uniforms = torch.stack(
            [
                torch.rand(params.max_new_tokens, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
                for seed in seeds
            ]
        )
        with torch.inference_mode():
            new_tokens = decode_rows(
                self.model,
                encoded["input_ids"],
                encoded["attention_mask"],
                uniforms,
                draw,
                end_ids=() if self.options.ignore_eos else self.eos_ids,
                banned_ids=self.eos_ids if self.options.ignore_eos else (),  # transformers' min_new_tokens rule
                stop=stop,
                on_step=steps,
            )
        return [self._completion(tokens, seed, params) for tokens, seed in zip(new_tokens, seeds, strict=True)]

    def _completion(self, new_ids: list[int], seed: int, params: SamplingParams) -> Completion:
        """Decode one row's new tokens: cut at end-of-sequence (kept in the token count), then at a stop string."""
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
            text = cut  # the row ended at the token that completed the stop string: all its tokens count
        finish = "stop" if hit_eos or cut is not None else "length"
        return Completion(text=text, finish_reason=finish, output_tokens=length, seed=seed)

    def close(self) -> None:
        """Release the model (the next generator may need the memory)."""
        self.model = None
