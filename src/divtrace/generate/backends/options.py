"""The options of each generation backend, as pydantic models: one per backend, discriminated on its name.

A study checkpoint's ``options:`` mapping and the flags of ``divtrace generate`` both build these models, so an
unknown option or a bad value is refused the same way (naming the key) before any model is loaded. This module
imports neither torch, vllm nor openai.

An options model dumps exactly the keys it was given, as given (order and values), never its defaults: that is
what a study's ``study.yaml`` and its generation keys have always held for ``options``, so they do not change.

Each built-in backend's constructor takes its model (``TransformersGenerator(model, TransformersOptions(...))``;
None: every default) and reads every setting from it: the defaults and the constraints on each value are stated
here, once. What a backend decides only once loaded (the transformers device and dtype by hardware, vLLM's CPU
KV-cache size) stays with the backend, documented there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

from divtrace.openai_calls import normalize_base_url

#: The backends that have an options model, by name (the ``backend`` of a checkpoint).
BackendName = Literal["transformers", "vllm", "openai"]


class _BackendOptions(BaseModel):
    """What every backend's options share: strict keys, frozen, dumped as given (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The options as given (without ``backend``), in the order given: what the model dumps.
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_given(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        if isinstance(data, Mapping):
            model._given = {key: value for key, value in data.items() if key != "backend"}
        return model

    @model_serializer(mode="plain")
    def _dump_given(self) -> dict[str, Any]:
        return dict(self._given)

    def with_defaults(self, **values: Any) -> Self:
        """These options plus ``values`` for the keys not given here (None values are skipped)."""
        extra = {key: value for key, value in values.items() if value is not None and key not in self._given}
        return type(self).model_validate({**self._given, **extra}) if extra else self


#: What ``adapter`` is, for the local backends (a study names it as the checkpoint's ``adapter``).
ADAPTER_HELP = "a LoRA adapter applied on the model: a PEFT adapter directory or quickstart:NAME"

#: Why a checkpoint on the openai backend cannot have an adapter, and what to do instead.
OPENAI_ADAPTER_REFUSAL = (
    "the openai backend cannot apply an adapter: its server serves adapters itself. Serve the adapter there (vLLM: "
    "--enable-lora --lora-modules NAME=PATH) and name the served adapter as the model, or sample with the "
    "transformers or vllm backend"
)

#: How the vLLM backend applies an adapter: at run time (``lora``) or merged into a cached copy (``merged``).
AdapterMode = Literal["lora", "merged"]


class TransformersOptions(_BackendOptions):
    """Options of the transformers backend (see :class:`~.transformers_backend.TransformersGenerator`)."""

    backend: Literal["transformers"] = Field("transformers", exclude=True)
    revision: str | None = None
    adapter: str | None = Field(None, description=ADAPTER_HELP + "; merged into the weights once loaded")
    device: str | None = Field(None, description="cpu, cuda, cuda:1...; default: cuda when available")
    dtype: str | None = Field(None, description="float32, bfloat16, float16; default: by device")
    batch_size: int = Field(64, ge=1, description="rows (samples) per forward batch (a row that ends leaves it)")
    ignore_eos: bool = Field(False, description="generate past end-of-sequence up to max_new_tokens (benchmarks)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    onednn: bool = Field(
        True,
        description="on a CPU in float32, compute the linear layers with oneDNN (2.2x MKL's speed for gemma's output "
        "layer on the AMD EPYC it was measured on; recorded as linear: onednn)",
    )


#: KV-cache size on a CPU platform when none is given (vLLM's own default reserves a share of *all* memory).
DEFAULT_CPU_KV_CACHE_GIB = 2.0


class VLLMOptions(_BackendOptions):
    """The vLLM engine options a study checkpoint (``options:``) or ``divtrace generate`` may set.

    Attributes:
        dtype: ``auto`` (the checkpoint's), ``bfloat16``, ``float16``, ``float32``.
        tensor_parallel_size: GPUs the model is split over.
        gpu_memory_utilization: share of GPU memory vLLM may take (None: vLLM's default); ignored on CPU.
        kv_cache_gib: KV-cache size in GiB (on CPU the default is :data:`DEFAULT_CPU_KV_CACHE_GIB`; on GPU None
            lets ``gpu_memory_utilization`` size it).
        enforce_eager: run without CUDA graphs / compilation (faster start; samples can differ from compiled).
        max_model_len: context length cap (None: the model's).
        device: ``auto``, ``cpu`` or ``cuda``: which platform to expect; vLLM's build decides the platform, and a
            mismatch is an error rather than silently ignored.
        adapter: a LoRA adapter applied on the model (a PEFT adapter directory or ``quickstart:NAME``).
        adapter_mode: how vLLM applies ``adapter``: ``merged`` (the default) merges it once with peft into a
            safetensors copy of the model under divtrace's cache (keyed by the base and the adapter's digest; a full
            copy of the model on disk, made in seconds for a small model) and loads that; ``lora`` serves it at run
            time on the base's weights (``enable_lora``, ``max_lora_rank`` from the adapter's config, a
            ``LoRARequest`` with every request), with no copy on disk. Both work on CPU vLLM 0.32 (tested on
            gemma-3-270m: each loads the adapter and changes the samples). ``merged`` is the default because it
            samples at the base's speed, as the plan's estimates assume (on CPU vLLM 0.32, 16 requests x 64 tokens:
            109-131 tok/s merged against 58-72 with LoRA, and a faster engine start), and because it samples the
            weights the transformers backend samples (both merge with peft). The two modes compute the same
            weights in another order, so their samples differ slightly: the mode is recorded on every sample and
            is part of its key.
    """

    backend: Literal["vllm"] = Field("vllm", exclude=True)
    revision: str | None = None
    dtype: str | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    kv_cache_gib: float | None = Field(None, gt=0)
    enforce_eager: bool = False
    max_model_len: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    adapter: str | None = Field(None, description=ADAPTER_HELP)
    adapter_mode: AdapterMode = "merged"


class OpenAIOptions(_BackendOptions):
    """Options of the openai backend (see :class:`~.openai_compat.OpenAIGenerator` for each one's meaning).

    ``base_url`` must be an http(s) URL; its value here is normalized (:func:`normalize_base_url`: ``/v1`` added
    to a bare host), while the dump keeps it as given. The ``chat`` endpoint takes no ``tokenizer`` (the server
    renders the prompts).
    """

    backend: Literal["openai"] = Field("openai", exclude=True)
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str | None = None
    endpoint: Literal["completions", "chat"] = "completions"
    tokenizer: str | None = None
    max_concurrency: int = Field(16, ge=1)
    max_retries: int = Field(5, ge=0)
    timeout: float = Field(600.0, gt=0)
    n_mode: Literal["auto", "native", "separate"] = "separate"
    extra_sampling_params: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return normalize_base_url(value)

    @model_validator(mode="after")
    def _tokenizer_needs_completions(self) -> Self:
        if self.endpoint == "chat" and self.tokenizer is not None:
            raise ValueError("the chat endpoint renders prompts on the server: drop tokenizer, or use completions")
        return self


#: A checkpoint's options: the model of its backend, chosen by the ``backend`` key.
BackendOptions = Annotated[TransformersOptions | VLLMOptions | OpenAIOptions, Field(discriminator="backend")]

#: The options model of each backend.
OPTIONS_MODELS: dict[str, type[TransformersOptions | VLLMOptions | OpenAIOptions]] = {
    "transformers": TransformersOptions,
    "vllm": VLLMOptions,
    "openai": OpenAIOptions,
}


def tag_options(backend: str, options: Any) -> Any:
    """``options`` (a mapping, or an options model) ready to validate as :data:`BackendOptions` of ``backend``.

    A mapping gets the ``backend`` key the union is discriminated on (a ``backend`` key of its own is refused);
    a model must be ``backend``'s. Anything else is returned as it is, for pydantic to refuse.
    """
    if isinstance(options, _BackendOptions):
        if getattr(options, "backend", None) != backend:
            raise ValueError(f"{type(options).__name__} are not options of the {backend} backend")
        return options
    if isinstance(options, Mapping):
        if "backend" in options:
            raise ValueError("'backend' is a key of the checkpoint, not of its options")
        return {**options, "backend": backend}
    return options


def tensor_parallel_size(options: BackendOptions) -> int:
    """GPUs one model of a checkpoint with ``options`` is split over: vLLM's ``tensor_parallel_size``, else 1."""
    return options.tensor_parallel_size if isinstance(options, VLLMOptions) else 1
