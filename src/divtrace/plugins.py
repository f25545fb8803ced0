"""The one plug-in registry: generation backends, diversity metrics, verifiers and tasks, by kind and name.

An entry says what a plug-in is called, where it lives (a lazy ``"module:attribute"`` reference, imported on first
use, or the object itself for code that registers at run time), the package it needs with the command that installs
it, and one line saying what it does. The built-in plug-ins are declared in :data:`BUILTIN_PLUGINS`, so listing the
names of a kind imports nothing heavy (no torch, no vLLM). Tasks are data: their entries are the task objects,
registered when :mod:`divtrace.tasks.registry` is first imported (:data:`CATALOG_MODULES`).

Adding a plug-in: a line in :data:`BUILTIN_PLUGINS` for a built-in one; :func:`register` (or the kind's decorator,
``register_metric``/``register_verifier``, or ``register_task``) for a third-party one.

A backend's target is a factory (a class, or any callable) that
:func:`~divtrace.generate.backends.create_generator` calls as ``factory(model)`` when no options are given and
``factory(model, options)`` otherwise, and that returns a :class:`~divtrace.generate.protocol.Generator`. The
built-in backends get their typed options model (``TransformersGenerator(model, TransformersOptions(...))``, a
mapping validated through it first); a third-party backend gets the options as they were given.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, replace
from typing import Any, Literal

from divtrace.errors import DivtraceError, ModelLoadError

#: The kinds of plug-in.
Kind = Literal["backend", "metric", "verifier", "task"]
KINDS: tuple[Kind, ...] = ("backend", "metric", "verifier", "task")


@dataclass(frozen=True)
class Requirement:
    """A package a plug-in imports, found by ``importlib.util.find_spec(package)``, and how to install it."""

    package: str
    install: str


@dataclass(frozen=True)
class PluginEntry:
    """One registered plug-in.

    Attributes:
        kind: backend, metric, verifier or task.
        name: the name studies and the CLI use.
        target: ``"module:attribute"`` (imported by :func:`load`) or the object itself.
        needs: the optional package it imports, or None when divtrace's own dependencies suffice.
        description: one line for listings ("" when the object describes itself).
    """

    kind: Kind
    name: str
    target: Any
    needs: Requirement | None = None
    description: str = ""

    @property
    def is_lazy(self) -> bool:
        """True while the target is still a ``"module:attribute"`` reference."""
        return isinstance(self.target, str)


class UnknownPlugin(DivtraceError, KeyError):
    """No plug-in of that kind has that name (a KeyError too, for callers of the former verifier registry)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


VLLM = Requirement("vllm", "pip install 'divtrace[vllm]' on a GPU machine, or the CPU build (README, 'vLLM')")

#: How an unknown name is reported, per kind: (the noun, the words before the known names, a closing remark).
_UNKNOWN_WORDING: dict[Kind, tuple[str, str, str]] = {
    "backend": ("generation backend", "choose one of", ""),
    "metric": ("metric", "known metrics:", ""),
    "verifier": ("verifier", "known:", ""),
    "task": ("task", "known tasks:", " (or a task .yaml file)"),
}

#: The module whose import registers a kind's built-in plug-ins that are objects rather than lazy references.
CATALOG_MODULES: dict[Kind, str] = {"task": "divtrace.tasks.registry"}

_B = "divtrace.generate.backends"
_M = "divtrace.score.metrics"
_V = "divtrace.verify"
#: The built-in plug-ins: (kind, name, lazy target, needs, description). Metrics describe themselves (the class's
#: ``description``), so their description here is empty.
BUILTIN_PLUGINS: tuple[tuple[Kind, str, str, Requirement | None, str], ...] = (
    ("backend", "transformers", f"{_B}.transformers_backend:TransformersGenerator", None, "Hugging Face transformers"),
    ("backend", "vllm", f"{_B}.vllm_backend:VLLMGenerator", VLLM, "vLLM (GPU, or its CPU build)"),
    ("backend", "openai", f"{_B}.openai_compat:OpenAIGenerator", None, "an OpenAI-compatible server"),
    ("metric", "answer-distinct", f"{_M}.answers:AnswerDistinct", None, ""),
    ("metric", "answer-entropy", f"{_M}.answers:AnswerEntropy", None, ""),
    ("metric", "ast", f"{_M}.code_ast:ASTPairwise", None, ""),
    ("metric", "ast-distinct", f"{_M}.code_ast:ASTDistinct", None, ""),
    ("metric", "code-sbert", f"{_M}.code_semantic:CodeSBERT", None, ""),
    ("metric", "code-vendi", f"{_M}.code_semantic:CodeVendi", None, ""),
    ("metric", "distinct", f"{_M}.lexical:DistinctN", None, ""),
    ("metric", "ead", f"{_M}.lexical:EAD", None, ""),
    ("metric", "nli", f"{_M}.nli:NLIDiversity", None, ""),
    ("metric", "sbert", f"{_M}.semantic:SBERT", None, ""),
    ("metric", "vendi", f"{_M}.semantic:Vendi", None, ""),
    ("verifier", "cruxeval", f"{_V}.code:CRUXEvalVerifier", None, "CRUXEval output prediction, run in the sandbox"),
    ("verifier", "gsm8k", f"{_V}.math:GSM8KVerifier", None, "GSM8K final number"),
    ("verifier", "humaneval", f"{_V}.code:HumanEvalVerifier", None, "HumanEval unit tests, run in the sandbox"),
    ("verifier", "ifeval", f"{_V}.ifeval:IFEvalVerifier", None, "IFEval instructions, strict and loose"),
    ("verifier", "math", f"{_V}.math:MathVerifier", None, "MATH final answer, by math-verify"),
    ("verifier", "mbpp", f"{_V}.code:MBPPVerifier", None, "MBPP unit tests, run in the sandbox"),
    ("verifier", "truthfulqa", f"{_V}.truthfulqa:TruthfulQAVerifier", None, "TruthfulQA free text against references"),
)  # fmt: skip

_REGISTRY: dict[Kind, dict[str, PluginEntry]] = {kind: {} for kind in KINDS}
for _kind, _name, _target, _needs, _description in BUILTIN_PLUGINS:
    _REGISTRY[_kind][_name] = PluginEntry(_kind, _name, _target, _needs, _description)


def _reference_of(target: Any) -> str | None:
    """``"module:qualname"`` of a class or function, None for other objects."""
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else None


def register(
    kind: Kind,
    name: str,
    target: Any,
    *,
    needs: Requirement | None = None,
    description: str = "",
    replace_existing: bool = False,
) -> PluginEntry:
    """Register ``target`` (an object, or a lazy ``"module:attribute"`` reference) as the ``kind`` plug-in ``name``.

    Registering the object a lazy built-in entry refers to (a decorator running as its module is imported) fills
    that entry in, keeping its requirement and description. Any other name already taken raises ValueError unless
    ``replace_existing``. Returns the entry now registered.
    """
    if kind not in _REGISTRY:
        raise ValueError(f"unknown plug-in kind {kind!r}; kinds: {', '.join(KINDS)}")
    current = _REGISTRY[kind].get(name)
    if current is not None and not replace_existing and current.target is not target:
        fills_in = current.is_lazy and _reference_of(target) == current.target
        if not fills_in:
            raise ValueError(f"{kind} name {name!r} is already registered ({_describe_target(current.target)})")
        entry = replace(current, target=target)
    else:
        entry = PluginEntry(kind, name, target, needs, description)
    _REGISTRY[kind][name] = entry
    return entry


def unregister(kind: Kind, name: str) -> None:
    """Remove the ``kind`` plug-in ``name`` (nothing happens when there is none); for tests and for code that
    registered a plug-in for a while."""
    _REGISTRY[kind].pop(name, None)


def _describe_target(target: Any) -> str:
    return target if isinstance(target, str) else (_reference_of(target) or type(target).__name__)


def _catalog(kind: Kind) -> dict[str, PluginEntry]:
    """The entries of ``kind``, after importing the module that registers its built-in objects (if any)."""
    if kind in CATALOG_MODULES:
        importlib.import_module(CATALOG_MODULES[kind])
    return _REGISTRY[kind]


def names(kind: Kind) -> list[str]:
    """The names of every ``kind`` plug-in, built-in ones first in table order; imports no plug-in module."""
    return list(_catalog(kind))


def entry(kind: Kind, name: str) -> PluginEntry:
    """The entry of the ``kind`` plug-in ``name``.

    Raises:
        UnknownPlugin: (a DivtraceError) no such plug-in; the message lists the known names of the kind.
    """
    catalog = _catalog(kind)
    if name not in catalog:
        noun, known, remark = _UNKNOWN_WORDING[kind]
        listed = sorted(catalog) if kind in ("metric", "verifier") else list(catalog)
        raise UnknownPlugin(f"unknown {noun} {name!r}; {known} {', '.join(listed)}{remark}")
    return catalog[name]


def check_installed(kind: Kind, name: str) -> None:
    """Raise ModelLoadError naming the package and its install command when plug-in ``name`` needs a package that
    is not installed (found with ``importlib.util.find_spec``, without importing it); UnknownPlugin for a name
    that is not registered."""
    needs = entry(kind, name).needs
    if needs is not None and importlib.util.find_spec(needs.package) is None:
        raise ModelLoadError(f"the {name} {kind} needs {needs.package}: {needs.install}")


def load(kind: Kind, name: str) -> Any:
    """The object of the ``kind`` plug-in ``name`` (a class for backends, metrics and verifiers; a Task), importing
    its module on first use.

    Raises:
        UnknownPlugin: no such plug-in (the message lists the known names).
        ModelLoadError: its package is not installed (the message says how to install it).
        DivtraceError: its lazy reference does not name an importable attribute.
    """
    found = entry(kind, name)
    if not found.is_lazy:
        return found.target
    check_installed(kind, name)
    module_name, _, attribute = str(found.target).partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise DivtraceError(f"{kind} plug-in {name!r}: cannot import {found.target} ({err})") from err
    current = _REGISTRY[kind].get(name, found)
    _REGISTRY[kind][name] = replace(current, target=target)
    return target


def load_class(kind: Kind, name: str, base: type[object]) -> type[Any]:
    """As :func:`load`, for a plug-in that must be a subclass of ``base`` (metrics, verifiers); DivtraceError
    when it is not."""
    target = load(kind, name)
    if not (isinstance(target, type) and issubclass(target, base)):
        raise DivtraceError(f"{kind} plug-in {name!r} is not a {base.__name__} class ({target!r})")
    return target
