"""The vLLM backend (GPU): one engine per model per process, ``n = K`` parallel sampling, a seed per request.

``vllm`` is imported only when this backend is constructed. The model's own ``generation_config.json`` defaults
(repetition penalty, top-k...) are NOT applied: the engine is built with ``generation_config="vllm"`` so that only
the parameters divtrace records take effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from divtrace.errors import ModelLoadError
from divtrace.generate.models import ResolvedModel, resolve_model
from divtrace.generate.params import SamplingParams
from divtrace.generate.protocol import Completion, GenerationRequest, SampleProgress
from divtrace.generate.rendering import TokenizerRendering

_ENGINES: dict[tuple[Any, ...], Any] = {}


def load_engine(
    resolved: ResolvedModel,
    *,
    dtype: str,
    tensor_parallel_size: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
) -> Any:
    """The process-wide ``vllm.LLM`` for this model and engine configuration, created on first use."""
    key = (resolved.load_path, resolved.revision, dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len)
    if key not in _ENGINES:
        try:
            from vllm import LLM
        except ImportError as err:
            raise ModelLoadError(
                "the vllm backend needs vLLM: pip install 'divtrace[vllm]' (on a GPU machine)"
            ) from err
        try:
            _ENGINES[key] = LLM(
                model=resolved.load_path,
                revision=resolved.revision,
                dtype=dtype,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                generation_config="vllm",
            )
        except Exception as err:
            raise ModelLoadError(f"vLLM cannot load {resolved.ref!r}: {type(err).__name__}: {err}") from err
    return _ENGINES[key]


class VLLMGenerator(TokenizerRendering):
    """Sample with vLLM's offline engine.

    Args:
        model: a model reference (see :func:`~divtrace.generate.models.resolve_model`).
        revision: hub revision.
        dtype: ``auto`` (the checkpoint's dtype, bf16 for most), ``bfloat16``, ``float16``, ``float32``.
        tensor_parallel_size: GPUs the model is split over.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        max_model_len: context length cap (default: the model's).
    """

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
    ) -> None:
        self.resolved = resolve_model(model, revision)
        self.dtype = dtype or "auto"
        self.tensor_parallel_size = tensor_parallel_size
        self.engine = load_engine(
            self.resolved,
            dtype=self.dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
        )
        self.tokenizer = self.engine.get_tokenizer()

    def model_ref(self) -> dict[str, Any]:
        """The identity of the loaded weights."""
        return dict(self.resolved.identity)

    def check(self, params: SamplingParams) -> dict[str, Any]:
        """The effective parameters; vLLM honours every :class:`SamplingParams` field as given."""
        import vllm

        return {
            **params.as_record(),
            "backend": self.backend,
            "backend_version": vllm.__version__,
            "dtype": str(self.engine.llm_engine.model_config.dtype),
            "tensor_parallel_size": self.tensor_parallel_size,
            "seeding": "one request per prompt with n=K and seed = the prompt's first sample seed",
            "model_generation_defaults_applied": False,
        }

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: SampleProgress | None = None,
    ) -> list[list[Completion]]:
        """One vLLM request per prompt (n = its number of seeds, seed = its first seed), all in one engine call."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        prompts = []
        sampling = []
        bos = getattr(self.tokenizer, "bos_token", None)
        for request in requests:
            add_special = not (bos and request.rendered.startswith(bos))
            ids = self.tokenizer(request.rendered, add_special_tokens=add_special)["input_ids"]
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            # top_k is passed only when set: vLLM's default is "disabled" (its sentinel changed from -1 to 0).
            top_k = {"top_k": params.top_k} if params.top_k is not None else {}
            sampling.append(
                VLLMSamplingParams(
                    n=len(request.seeds),
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_new_tokens,
                    stop=list(params.stop) or None,
                    seed=request.seeds[0],
                    **top_k,
                )
            )
        outputs = self.engine.generate(prompts, sampling, use_tqdm=False)
        results: list[list[Completion]] = []
        for request, output in zip(requests, outputs, strict=True):
            completions = [
                Completion(
                    text=choice.text,
                    finish_reason="length" if choice.finish_reason == "length" else "stop",
                    output_tokens=len(choice.token_ids),
                    seed=request.seeds[0],
                )
                for choice in sorted(output.outputs, key=lambda c: c.index)
            ]
            if len(completions) != len(request.seeds):
                raise RuntimeError(f"vLLM returned {len(completions)} samples, {len(request.seeds)} requested")
            results.append(completions)
            if progress is not None:
                progress(len(completions))
        return results

    def close(self) -> None:
        """Keep the engine: it is reused by the next generator for the same model in this process."""
        return None
