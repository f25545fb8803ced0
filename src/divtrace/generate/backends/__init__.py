"""Generation backends, built by name; each module imports its heavy dependency (torch, vllm, openai) lazily."""

from __future__ import annotations

from typing import Any

from divtrace.errors import DivtraceError
from divtrace.generate.protocol import Generator

BACKENDS = ("transformers", "vllm", "openai")


def create_generator(backend: str, model: str, **options: Any) -> Generator:
    """A loaded generator of ``backend`` for ``model`` (a model reference, or the served model name for openai).

    ``options`` are the backend's constructor keywords (device, dtype, batch size, base_url, tensor_parallel_size,
    ...). Only the chosen backend's module is imported, so vLLM is never imported unless asked for.
    """
    if backend == "transformers":
        from divtrace.generate.backends.transformers_backend import TransformersGenerator

        return TransformersGenerator(model, **options)
    if backend == "vllm":
        from divtrace.generate.backends.vllm_backend import VLLMGenerator

        return VLLMGenerator(model, **options)
    if backend == "openai":
        from divtrace.generate.backends.openai_compat import OpenAIGenerator

        return OpenAIGenerator(model, **options)
    raise DivtraceError(f"unknown generation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
