"""Resuming a generation: which stored shards are finished, decided before any model is loaded where possible, and
which setting differs when a stored shard was made otherwise.

A sample's key (:func:`~divtrace.generate.store.sample_key`) covers the model's identity, the rendered prompt and
the effective sampling parameters, and some of those are only certain once the model is loaded (a hub branch's
commit, the chat template, a vLLM engine's settings). :func:`generation_status` compares what a stored shard says
with what can be known without the model: the prompts, every requested setting, the model reference and, for the
transformers backend, the library versions, device and dtype. It calls a generation done only when all of those
match and every stored key is consistent with its record; anything it cannot confirm leaves the decision to the
loaded model (:func:`divtrace.generate.runner.generate_samples`), never to a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.generate.backends.options import BackendOptions, TransformersOptions, tag_options
from divtrace.generate.job import GenerationJob
from divtrace.generate.models import ADAPTER_REF_KEYS
from divtrace.generate.params import SamplingParams, sample_seed
from divtrace.generate.prompts import PromptItem
from divtrace.generate.stops import StopPolicy, effective_stops
from divtrace.generate.store import read_shard_settings, sample_key

_ABSENT = object()
_COMMIT = re.compile(r"[0-9a-f]{40}")
#: Record keys of ``sampling`` that are not part of the sample key (see ``runner._plan``).
UNKEYED_SAMPLING = ("chat_template", "stop_policy")
#: transformers ``sampling`` keys fixed by the model's files, so confirmed by its identity.
_PINNED_BY_WEIGHTS = ("model_generation_defaults_not_applied",)


class ResumeMismatchError(DivtraceError):
    """A stored shard was made with other settings than this run; its message names the first that differs."""


@dataclass(frozen=True)
class ModelSource:
    """The model a generation asks for, before it is loaded: backend, reference, revision and the backend's typed
    options (what :func:`~divtrace.generate.backends.create_generator` builds it with; None: the defaults)."""

    backend: str
    model: str
    revision: str | None = None
    options: BackendOptions | None = None

    def __post_init__(self) -> None:
        if self.options is not None:
            tag_options(self.backend, self.options)  # ValueError for options of another backend


@dataclass(frozen=True)
class Expectation:
    """What one shard must hold: its prompts and seeds, the ``sampling`` values to compare (a key absent here is
    not compared), the ``model_ref`` (None: not compared) and the rendered prompts (None: not compared).

    ``complete`` says that ``sampling`` and ``model_ref`` are the whole records (keys stored but not expected are
    then differences too).
    """

    prompts: tuple[PromptItem, ...]
    params: SamplingParams
    sampling: dict[str, Any]
    model_ref: dict[str, Any] | None
    rendered: tuple[str, ...] | None = None
    complete: bool = False
    stop_policy: StopPolicy | None = None


@dataclass(frozen=True)
class GenerationStatus:
    """Shards of one (checkpoint, task) and, without a model, which are known to be finished.

    ``missing``: shards with no file. ``unconfirmed``: why some stored shard can only be confirmed with the model
    loaded. ``done`` is True only when every shard is stored and confirmed.
    """

    shards: int
    finished: tuple[int, ...]
    missing: tuple[int, ...]
    unconfirmed: tuple[str, ...]

    @property
    def done(self) -> bool:
        """Every shard is stored and matches every setting of this run."""
        return not self.missing and not self.unconfirmed and len(self.finished) == self.shards

    def describe(self) -> str:
        """One sentence: done, or what is left and why the model is needed."""
        if self.done:
            return f"all {self.shards} shard(s) are already done"
        parts = [f"{len(self.finished)} of {self.shards} shard(s) confirmed done without loading the model"]
        if self.missing:
            parts.append(f"{len(self.missing)} not written yet")
        parts.extend(self.unconfirmed[:1])
        return "; ".join(parts)


def difference(stored: Sequence[dict[str, Any]], expected: Expectation) -> str | None:
    """The first setting in which shard rows ``stored`` (:func:`~divtrace.generate.store.read_shard_settings`)
    differ from ``expected``, as ``NAME=STORED, now EXPECTED``; None when nothing compared differs."""
    stored_ids = [row["prompt_id"] for row in stored]
    wanted_ids = [item.prompt_id for item in expected.prompts]
    if stored_ids != wanted_ids:
        return f"prompt ids={_show(stored_ids)}, now {_show(wanted_ids)}"
    for row, item in zip(stored, expected.prompts, strict=True):
        if row["prompt"] != item.prompt:
            return f"the text of prompt {item.prompt_id!r}={_show(row['prompt'])}, now {_show(item.prompt)}"
    for index, row in enumerate(stored):
        sampling = row["sampling"] or {}
        wanted = dict(expected.sampling)
        if expected.stop_policy is not None:  # the stops in effect depend on whether a chat template was used
            wanted["stop"] = list(
                effective_stops(expected.params.stop, expected.stop_policy, bool(sampling.get("chat_template")))
            )
        found = _first_change(sampling, wanted, expected.complete, "")
        if found is not None:
            return found
        if expected.model_ref is not None:
            found = _first_change(row["model_ref"] or {}, expected.model_ref, expected.complete, "model_ref.")
            if found is not None:
                return found
        if expected.rendered is not None and row["rendered_prompt"] != expected.rendered[index]:
            return (
                f"the rendered prompt of {row['prompt_id']!r}={_show(row['rendered_prompt'])}, now "
                f"{_show(expected.rendered[index])} (chat template, system prompt or thinking)"
            )
        seeds = [sample_seed(expected.params.seed, row["prompt_id"], k) for k in range(expected.params.k)]
        if row["sample_seeds"] != seeds:
            return f"sample seeds of {row['prompt_id']!r}={_show(row['sample_seeds'])}, now {_show(seeds)}"
    return None


def mismatch_message(path: Path, what: str | None) -> str:
    """The refusal for shard ``path`` made with other settings: which (``what``), and what to do."""
    if what is None:
        what = "different sample keys (a different model, prompts or sampling settings)"
        return f"{path.stem} ({path}) holds {what} than this run; use a new --out or the same settings"
    return f"{path.stem} ({path}) was generated with {what}; use a new --out or the same settings"


def generation_status(job: GenerationJob, source: ModelSource) -> GenerationStatus:
    """Which shards of ``job`` are finished, decided without loading the model ``source`` describes.

    Contract: a shard counts as finished only when its file holds these prompts, every requested setting
    (sampling parameters, stop policy, system prompt, thinking, chat template when given, backend and the
    backend options given), the model's identity as far as it is known without loading it, the environment's
    library versions, device and dtype (transformers), and sample keys consistent with its own records. A shard
    that differs in a requested setting or the model's identity raises :class:`ResumeMismatchError` naming the
    setting; one that cannot be confirmed without the model is reported in ``unconfirmed`` (the run then loads it).
    """
    params, render = job.params, job.render
    stop_policy = render.stops
    requested: dict[str, Any] = {
        **params.as_record(),
        "backend": source.backend,
        "stop_policy": stop_policy.value,
        "system_prompt": render.system_prompt,
        "thinking": render.thinking.value,
    }
    requested.pop("stop")  # compared per row: it depends on the chat template in use
    # A setting a record leaves out when it is off (min_p) is requested off: a stored shard must not hold it either.
    requested.update({name: _ABSENT for name in SamplingParams.model_fields if name not in params.as_record()})
    if render.chat_template is not None:
        requested["chat_template"] = render.chat_template
    explicit, environment, known_keys, why_not = _environment(source)
    requested.update(explicit)
    model_ref, commit_known = _known_model_ref(source)
    # Without an adapter, a stored shard drawn with one differs in the model (named before anything else of it).
    certain_ref = _without(model_ref, "commit")
    if certain_ref is not None and _adapter_of(source) is None:
        certain_ref.update({key: _ABSENT for key in ADAPTER_REF_KEYS})
    shards = len(job.shard_ranges())
    finished: list[int] = []
    missing: list[int] = []
    unconfirmed: list[str] = []
    for index in range(shards):
        path = job.shard_path(index)
        chunk = job.shard_prompts(index)
        stored = read_shard_settings(path)
        if stored is None:
            missing.append(index)
            continue
        certain = Expectation(chunk, params, requested, certain_ref, stop_policy=stop_policy)
        found = difference(stored, certain)
        if found is not None:
            raise ResumeMismatchError(mismatch_message(path, found))
        reason = why_not or _unconfirmed(stored, environment, known_keys | requested.keys(), model_ref, commit_known)
        if reason is None:
            finished.append(index)
        else:
            unconfirmed.append(f"{path.stem}: {reason}")
    return GenerationStatus(shards, tuple(finished), tuple(missing), tuple(unconfirmed))


def _environment(source: ModelSource) -> tuple[dict[str, Any], dict[str, Any], set[str], str | None]:
    """(settings the options fix, settings this machine implies, every sampling key accounted for, or why the
    backend's settings are only known once loaded)."""
    if source.backend != "transformers":
        return {}, {}, set(), f"the {source.backend} backend's settings are only known once it is loaded"
    import torch
    import transformers

    from divtrace.generate.backends.onednn_linear import linear_setting
    from divtrace.generate.backends.transformers_backend import SEEDING, default_device, default_dtype

    # None: the model's defaults (an options model of another backend is refused by ModelSource).
    options = source.options if isinstance(source.options, TransformersOptions) else TransformersOptions()
    # Explicit: the settings the user gave (the model's fields set), not the defaults the model fills in.
    explicit: dict[str, Any] = {
        key: value
        for key in ("device", "dtype", "ignore_eos")
        if key in options.model_fields_set and (value := getattr(options, key)) is not None
    }
    device = options.device or default_device()
    dtype = options.dtype or default_dtype(device)
    environment: dict[str, Any] = {
        "backend_version": transformers.__version__,
        "torch_version": torch.__version__,
        "device": device,
        "dtype": dtype,
        "ignore_eos": options.ignore_eos,
        "seeding": SEEDING,
    }
    if linear := linear_setting(options.onednn, device, dtype):
        environment["linear"] = linear
    if options.adapter is not None:
        from divtrace.generate.backends.transformers_backend import adapter_settings

        environment.update(adapter_settings())
    return explicit, environment, {*environment, *_PINNED_BY_WEIGHTS, "chat_template", "stop"}, None


def _known_model_ref(source: ModelSource) -> tuple[dict[str, Any] | None, bool]:
    """The model's identity as far as it is known unloaded (its adapter's included), and whether that includes its
    hub commit."""
    if source.backend == "openai":
        return None, False
    from divtrace.generate.models import resolve_adapter, resolve_model

    resolved = resolve_model(source.model, source.revision, convert=False)
    adapter = _adapter_of(source)
    identity = {**resolved.identity, **(resolve_adapter(adapter).identity if adapter is not None else {})}
    if resolved.is_local:
        return identity, True
    if source.revision is not None and _COMMIT.fullmatch(source.revision):
        return {**identity, "commit": source.revision}, True
    return identity, False


def _adapter_of(source: ModelSource) -> str | None:
    """The adapter ``source``'s options apply on its model (None: none, or a backend without adapters)."""
    return getattr(source.options, "adapter", None)


def _unconfirmed(
    stored: Sequence[dict[str, Any]],
    environment: dict[str, Any],
    known_keys: set[str],
    model_ref: dict[str, Any] | None,
    commit_known: bool,
) -> str | None:
    for row in stored:
        sampling = row["sampling"] or {}
        for key, value in environment.items():
            if sampling.get(key, _ABSENT) != value:
                return f"{key}={_show(sampling.get(key, _ABSENT))}, here {_show(value)}"
        unknown = sorted(set(sampling) - known_keys)
        if unknown:
            return f"sampling setting(s) {', '.join(unknown)} cannot be checked without the model"
        if model_ref is None or not commit_known:
            return "the model's exact revision is only known once it is loaded"
        if (row["model_ref"] or {}) != model_ref:
            return f"model_ref={_show(row['model_ref'])}, here {_show(model_ref)}"
        keyed = {key: value for key, value in sampling.items() if key not in UNKEYED_SAMPLING}
        keys = [
            sample_key(row["model_ref"], row["rendered_prompt"], keyed, seed, k)
            for k, seed in enumerate(row["sample_seeds"] or [])
        ]
        if keys != row["sample_keys"]:
            return "its sample keys do not match its own records"
    return None


def _first_change(stored: dict[str, Any], wanted: dict[str, Any], complete: bool, prefix: str) -> str | None:
    names = list(wanted) + ([key for key in stored if key not in wanted] if complete else [])
    for name in names:
        before, now = stored.get(name, _ABSENT), wanted.get(name, _ABSENT)
        if before != now:
            return f"{prefix}{name}={_show(before)}, now {_show(now)}"
    return None


def _without(values: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if values is None:
        return None
    return {name: value for name, value in values.items() if name != key}


def _show(value: object) -> str:
    if value is _ABSENT:
        return "(not set)"
    text = repr(value) if isinstance(value, str | list | dict) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
