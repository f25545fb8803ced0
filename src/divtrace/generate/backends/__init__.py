"""Generation backends, built by name; each module imports its heavy dependency (torch, vllm, openai) lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from divtrace import plugins
from divtrace.errors import DivtraceError
from divtrace.generate.protocol import Generator

#: The generation backends (entries of kind ``backend`` in :mod:`divtrace.plugins`), in table order.
BACKENDS = tuple(plugins.names("backend"))

#: The constructor keywords each backend takes from ``divtrace generate``'s flags (the flags of other backends are
#: ignored; see :func:`backend_options`).
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "transformers": ("revision", "device", "dtype", "batch_size", "threads"),
    "vllm": (
        "revision", "dtype", "tensor_parallel_size", "gpu_memory_utilization", "kv_cache_gib", "enforce_eager",
        "max_model_len", "device",
    ),
    "openai": (
        "base_url", "endpoint", "max_concurrency", "max_retries", "n_mode", "tokenizer", "extra_sampling_params",
    ),
}  # fmt: skip


#: The package each optional backend imports, and how to install it (from the plug-in registry).
BACKEND_PACKAGES: dict[str, tuple[str, str]] = {
    name: (needs.package, needs.install)
    for name in BACKENDS
    if (needs := plugins.entry("backend", name).needs) is not None
}


def check_installed(backend: str) -> None:
    """Raise :class:`~divtrace.errors.ModelLoadError` with the install command when ``backend``'s package is not
    installed (found without importing it, so the check is instant); DivtraceError for an unknown backend."""
    plugins.check_installed("backend", backend)


def backend_options(backend: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords of ``backend`` picked from ``values`` (every flag of ``divtrace generate``).

    vLLM's device defaults to ``auto``; the openai backend needs a ``base_url``. Raises DivtraceError for an unknown
    backend or a missing server URL, before any model is loaded.
    """
    if backend not in BACKEND_OPTIONS:
        raise DivtraceError(f"unknown generation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    options = {name: values.get(name) for name in BACKEND_OPTIONS[backend]}
    if backend == "vllm":
        options["device"] = options["device"] or "auto"
    if backend == "openai" and not options["base_url"]:
        raise DivtraceError("the openai backend needs --base-url (the server, e.g. http://127.0.0.1:8000/v1)")
    return options


def create_generator(backend: str, model: str, **options: Any) -> Generator:
    """A loaded generator of ``backend`` for ``model`` (a model reference, or the served model name for openai).

    ``options`` are the backend's constructor keywords (device, dtype, batch size, base_url, tensor_parallel_size,
    ...). Only the chosen backend's module is imported (:func:`divtrace.plugins.load`), so vLLM is never imported
    unless asked for. Raises DivtraceError for an unknown backend, ModelLoadError naming the extra to install.
    """
    generator: Generator = plugins.load("backend", backend)(model, **options)
    return generator
