"""Generation backends, built by name; each module imports its heavy dependency (torch, vllm, openai) lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from divtrace import plugins
from divtrace.errors import DivtraceError
from divtrace.generate.backends.options import OPTIONS_MODELS, BackendOptions
from divtrace.generate.protocol import Generator

#: The generation backends (entries of kind ``backend`` in :mod:`divtrace.plugins`), in table order.
BACKENDS = tuple(plugins.names("backend"))

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


def validate_options(backend: str, options: BackendOptions | Mapping[str, Any]) -> BackendOptions:
    """``options`` as the options model of the built-in ``backend`` (:data:`OPTIONS_MODELS`): a mapping is validated
    through it (its keys only, as given), a model of that backend is returned as it is.

    Raises DivtraceError naming the bad key (``transformers backend options: batch_size: ...``), or when ``options``
    is neither a mapping nor ``backend``'s model.
    """
    model = OPTIONS_MODELS[backend]
    if isinstance(options, model):
        return options
    if not isinstance(options, Mapping):
        raise DivtraceError(
            f"{backend} backend options must be a mapping or {model.__name__}, not {type(options).__name__}"
        )
    try:
        return model.model_validate(dict(options))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in err.errors()
        )
        raise DivtraceError(f"{backend} backend options: {problems}") from None


def backend_options(backend: str, values: Mapping[str, Any]) -> BackendOptions:
    """The options model of ``backend`` (:mod:`~divtrace.generate.backends.options`) built from ``values`` (the
    backend flags of ``divtrace generate``): the keys that are options of ``backend``, None values left out (so
    the model's defaults apply to them).

    The same model a study checkpoint's ``options:`` is validated with. Raises DivtraceError for an unknown backend,
    a bad value (naming the option) or, for openai, a missing server URL, before any model is loaded.
    """
    if backend not in OPTIONS_MODELS:
        raise DivtraceError(f"unknown generation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model = OPTIONS_MODELS[backend]
    given = {name: values[name] for name in model.model_fields if name != "backend" and values.get(name) is not None}
    if backend == "openai" and not given.get("base_url"):
        raise DivtraceError("the openai backend needs --base-url (the server, e.g. http://127.0.0.1:8000/v1)")
    return validate_options(backend, given)


def create_generator(backend: str, model: str, options: BackendOptions | Mapping[str, Any] | None = None) -> Generator:
    """A loaded generator of ``backend`` for ``model`` (a model reference, or the served model name for openai).

    The contract with a backend's factory (its :mod:`divtrace.plugins` entry of kind ``backend``): it is called as
    ``factory(model)`` when ``options`` is None (the backend's defaults) and as ``factory(model, options)``
    otherwise, and returns a :class:`~divtrace.generate.protocol.Generator`. A built-in backend (one of
    :data:`OPTIONS_MODELS`) gets its typed options model: a mapping (``{"batch_size": 8}``) is validated through it
    first (:func:`validate_options`, a bad key named before anything is imported); a plug-in backend gets
    ``options`` as given. Only the chosen backend's module is imported (:func:`divtrace.plugins.load`), so vLLM is
    never imported unless asked for. Raises DivtraceError for an unknown backend or bad options, ModelLoadError
    naming the extra to install.
    """
    if options is not None and backend in OPTIONS_MODELS:
        options = validate_options(backend, options)
    factory = plugins.load("backend", backend)
    generator: Generator = factory(model) if options is None else factory(model, options)
    return generator
