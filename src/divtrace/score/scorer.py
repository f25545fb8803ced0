"""The one scorer: every entry point (``divtrace score``, ``divtrace run``, ``divtrace analyze``, the Python API and
the Ray executor) scores samples through :class:`Scorer`, so the same samples give the same numbers everywhere.

What it computes, per (checkpoint, task):

- **per prompt**, for each requested subset of a prompt's K responses (rows of :data:`PER_PROMPT_COLUMNS`):
  ``all`` (the K responses); ``correct`` (the responses verified correct, for prompts with at least 2 of them:
  the quality-filtered decomposition, V_c included); ``curves`` (``k=2, 4, 8, ...`` below K: the first k responses,
  a random subsample since samples are i.i.d.; diversity-vs-K curves);
- **across inputs**: the metric over the first response of at most ``across_input_prompts`` prompts (500, the
  study's), drawn with ``numpy.random.RandomState(across_input_seed).choice`` over the prompts in the order they
  were selected (:func:`across_input_sample`; the ids play no part);
- a **summary** per (checkpoint, task, metric, subset): prompts, mean, std, 95% bootstrap CI of the mean, the
  across-input value (subset ``all``), ``unclosed_thinking`` and ``indistinguishable_texts``.

Every value is clipped into its metric's :attr:`~divtrace.score.metrics.Metric.value_range` (floating-point noise never
leaves it). For the sentence-embedding metrics, ``indistinguishable_texts`` counts the outputs of a prompt that the
embedder cannot tell from a different output of the same group (same embedding, e.g. emoji-only outputs that
all-MiniLM reads as one unknown token): their diversity is understated. The total and a few examples are in
``settings["indistinguishable_texts"]``.

Progress (:class:`~divtrace.progress.ProgressEvent`, by step): ``loading models`` (nothing counted, once, before the
first score); ``embedding`` in texts; ``<metric>`` in prompts, a few prompts per metric call (NLI in classifier
pairs, reported by the metric per batch); ``<metric> across-input`` likewise. The caller fills in the stage and the
unit (:func:`~divtrace.progress.scoped`).

Which metric scores which group is decided from the metric and the task registry (never from a list of names):
metrics not suitable for code skip code tasks, code-only metrics skip tasks known not to be code, answer metrics
score the extracted answers of verified samples, and every metric needs groups of at least 2.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_json_atomic, write_table_atomic
from divtrace.progress import PROMPTS, ProgressSink, emit, scoped
from divtrace.samples import DEFAULT_TASK, SampleRecord
from divtrace.samples.thinking import unclosed_count
from divtrace.score.indistinguishable import IndistinguishableTally, indistinguishable_positions
from divtrace.score.metric_spec import SETTINGS_PARAMETER, MetricChoice, as_spec, validated_args
from divtrace.score.metrics import Metric, ScoringContext, metric_class
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.settings import EADSettings, EmbedderSettings, FrozenSettings, NLISettings
from divtrace.stats import curve_levels
from divtrace.stats.bootstrap import BootstrapSettings, cell_mean_cis

#: The subsets a scorer can be asked for.
SUBSETS = ("all", "correct", "curves")
#: The subset label of across-input rows in a run's per-unit score table.
ACROSS_INPUT = "across-input"
#: At most this many prompts enter an across-input score (the study's N).
ACROSS_INPUT_PROMPTS = 500
#: The study's seed (FIDELITY.md).
ACROSS_INPUT_SEED = 1234
PER_PROMPT_COLUMNS = [
    "checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs", "unclosed_thinking",
    "indistinguishable_texts",
]  # fmt: skip
ACROSS_COLUMNS = ["checkpoint", "task", "metric", "n_prompts", "value"]
SUMMARY_COLUMNS = [
    "checkpoint", "task", "metric", "subset", "n_prompts", "mean", "std", "ci_low", "ci_high", "across_input",
    "unclosed_thinking", "indistinguishable_texts",
]  # fmt: skip
#: Count columns: nullable integers, <NA> where they do not apply.
_COUNT_COLUMNS = ("unclosed_thinking", "indistinguishable_texts")
#: Metrics without progress of their own are called on the groups of this many prompts at a time.
PROMPTS_PER_CALL = 32

#: Metrics that need no model beyond the default packaged embedder: the offline default of ``divtrace score``.
OFFLINE_METRICS = ("ead", "sbert", "vendi")


def build_metrics(
    choices: Iterable[MetricChoice | Metric],
    nli: NLISettings | None = None,
    ead_vocab_size: int | None = None,
    ead_tokenizer: str | None = None,
    *,
    shared: Iterable[FrozenSettings] = (),
) -> list[Metric]:
    """Metric objects for ``choices`` (registry names, :class:`MetricSpec` with args, or ready instances).

    A metric that declares a :attr:`~divtrace.score.metrics.Metric.settings_type` gets the shared settings object
    of that type as its ``settings`` argument (unless its args give one): the run's ``nli`` settings, EAD's
    :class:`~divtrace.score.settings.EADSettings` (from ``ead_vocab_size``/``ead_tokenizer``), and any object in
    ``shared``. EAD without a V or tokenizer uses 50257 (the study's V for every checkpoint); with tokenizer
    ``generator`` it takes the ``vocab_size`` given to :meth:`Scorer.score`. Raises DivtraceError for an unknown
    metric or bad args.
    """
    by_type: dict[type[FrozenSettings], FrozenSettings] = {
        EADSettings: EADSettings(vocab_size=ead_vocab_size, tokenizer=ead_tokenizer)
    }
    if nli is not None:
        by_type[NLISettings] = nli
    by_type.update({type(settings): settings for settings in shared})
    metrics: list[Metric] = []
    for index, item in enumerate(choices):
        if isinstance(item, Metric):
            metrics.append(item)
            continue
        spec = as_spec(item)
        cls = metric_class(spec.name)
        try:
            args = validated_args(cls, spec.args, where=f"metrics.{index}.args")
        except ValueError as err:
            raise DivtraceError(str(err)) from None
        if cls.settings_type is not None and SETTINGS_PARAMETER not in args:
            args[SETTINGS_PARAMETER] = by_type.get(cls.settings_type)
        metrics.append(cls(**args))
    return metrics


@dataclass(frozen=True)
class ScoreOptions:
    """What a scorer computes besides the metrics themselves (all recorded in the score settings).

    Attributes:
        subsets: any of :data:`SUBSETS`; ``correct`` needs verdicts.
        across_input_prompts: prompts in an across-input score at most (sampled when there are more).
        across_input_seed: seed of that sample.
        bootstrap: CI settings of the summary.
    """

    subsets: tuple[str, ...] = ("all",)
    across_input_prompts: int = ACROSS_INPUT_PROMPTS
    across_input_seed: int = ACROSS_INPUT_SEED
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)

    def __post_init__(self) -> None:
        unknown = [s for s in self.subsets if s not in SUBSETS]
        if unknown or "all" not in self.subsets:
            raise ValueError(f"subsets must include 'all' and be among {SUBSETS}; got {list(self.subsets)}")
        if self.across_input_prompts < 2:
            raise ValueError("across_input_prompts must be at least 2")

    def settings(self) -> dict[str, Any]:
        """The options as recorded next to the scores."""
        return {
            "subsets": list(self.subsets),
            "across_input": {
                "max_prompts": self.across_input_prompts,
                "seed": self.across_input_seed,
                "order": ACROSS_INPUT_ORDER,
            },
            "bootstrap": {
                "resamples": self.bootstrap.resamples,
                "confidence": self.bootstrap.confidence,
                "seed": self.bootstrap.seed,
                "method": "percentile",
            },
        }


@dataclass(frozen=True)
class SampleVerdicts:
    """The verdicts of one prompt's samples, in sample order: correct or not, and the answer each votes with
    (None when nothing could be extracted)."""

    correct: tuple[bool, ...]
    answers: tuple[str | None, ...]


#: ``{(checkpoint, task, prompt_id): SampleVerdicts}``.
Verdicts = Mapping[tuple[str, str, str], SampleVerdicts]


def verdicts_from_table(verdicts: pd.DataFrame) -> dict[tuple[str, str, str], SampleVerdicts]:
    """:class:`SampleVerdicts` per prompt from a verdict table (``divtrace verify``'s columns).

    A sample's answer is the verifier's normalised answer (``extra["normalized"]``, e.g. math-verify's SymPy form)
    when it gives one, else ``extracted``: the answer it votes with in the majority vote.
    """
    from divtrace.verify.aggregate import verdict_from_row, vote_key

    ordered = verdicts.sort_values(["checkpoint", "task", "prompt_id", "sample_index"])
    lookup: dict[tuple[str, str, str], SampleVerdicts] = {}
    for (checkpoint, task, prompt_id), group in ordered.groupby(["checkpoint", "task", "prompt_id"], sort=False):
        samples = [verdict_from_row(row) for row in group.to_dict(orient="records")]
        lookup[(str(checkpoint), str(task), str(prompt_id))] = SampleVerdicts(
            tuple(v.correct for v in samples), tuple(vote_key(v) for v in samples)
        )
    return lookup


#: Lone UTF-16 surrogates: valid in JSON and in a Python str, but not encodable, so no tokenizer accepts them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable_records(records: Sequence[SampleRecord]) -> tuple[list[SampleRecord], int]:
    """``records`` with every lone surrogate in the scored texts replaced by U+FFFD, and how many texts had one.

    A record without such a text is returned as it is (the same object).
    """
    cleaned: list[SampleRecord] = []
    changed = 0
    for record in records:
        texts = record.scored_texts()
        fixed = [_SURROGATE.sub("\ufffd", text) for text in texts]
        bad = sum(a != b for a, b in zip(texts, fixed, strict=True))
        changed += bad
        cleaned.append(record.model_copy(update={"responses": fixed}) if bad else record)
    return cleaned, changed


def is_code_task(task: str) -> bool | None:
    """Whether ``task`` is a code task by the task registry; None for a label the registry does not know."""
    from divtrace.tasks import get_task, task_names

    return get_task(task).code if task in task_names() else None


#: How the across-input prompts are drawn, as recorded in the score settings.
ACROSS_INPUT_ORDER = "selection"


def across_input_sample(n_prompts: int, max_prompts: int, seed: int) -> list[int]:
    """Positions of the prompts an across-input score uses, among ``n_prompts`` prompts in the order they were
    selected, in increasing order.

    All of them when there are at most ``max_prompts``; otherwise ``max_prompts`` positions drawn without
    replacement by ``numpy.random.RandomState(seed).choice(n_prompts, max_prompts)``, as the study's code draws
    them over its prompts in document order. The prompt ids play no part, so renaming them never changes the
    sample. In a run every checkpoint's records of a task come in the task's selection order, so every checkpoint
    is compared on the same prompts; sample files give their own order.
    """
    if n_prompts <= max_prompts:
        return list(range(n_prompts))
    chosen = np.random.RandomState(seed).choice(n_prompts, size=max_prompts, replace=False)
    return sorted(int(position) for position in chosen)


@dataclass
class ScoreResult:
    """Everything one scoring call produced.

    Attributes:
        per_prompt: :data:`PER_PROMPT_COLUMNS` (plus a column per metric diagnostic, e.g. ``parse_rate``).
        across_input: :data:`ACROSS_COLUMNS`: the metric over the first response of the sampled prompts.
        summary: :data:`SUMMARY_COLUMNS` (plus the mean of each diagnostic), with bootstrap CIs: computed on
            first access (a run stores the per-prompt and across-input rows only, so it never pays for it).
        settings: every option that determined the numbers (metrics, embedders and their cache keys, subsets,
            across-input sample, bootstrap).
        embedding_stats: what the embedding store did (texts asked for, unique, from cache, encoded).
        bootstrap: the CI settings of ``summary``.

    ``settings["unencodable_texts"]`` counts the texts that held lone surrogates (scored as U+FFFD);
    ``settings["indistinguishable_texts"]`` (None without a sentence-embedding metric) is ``{"count", "prompts",
    "examples", "embedder"}``: the outputs the sentence embedder could not tell from a different output of their
    prompt, the prompts that had any, and up to five examples ``{"checkpoint", "task", "prompt_id", "texts"}``.
    """

    per_prompt: pd.DataFrame
    across_input: pd.DataFrame
    settings: dict[str, Any]
    embedding_stats: dict[str, int] = field(default_factory=dict)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)

    @functools.cached_property
    def summary(self) -> pd.DataFrame:
        """The per-(checkpoint, task, metric, subset) summary (see the class docstring), computed once."""
        return summarise(self.per_prompt, self.across_input, self.bootstrap)


@dataclass(frozen=True)
class _Group:
    record: SampleRecord
    subset: str
    texts: tuple[str, ...]
    answers: tuple[str | None, ...] | None


class Scorer:
    """Metrics and their models, loaded once, scoring any number of record batches the same way.

    ``embedder`` serves metrics that read sentence embeddings (default: the packaged all-MiniLM-L6-v2);
    ``code_embedder`` serves the code-embedding metrics (required when one is asked for: there is no offline
    default code encoder). Either is a ready store or the settings of one, opened by :meth:`prepare` after every
    metric has loaded (so a metric that cannot load fails before any cache is touched); ``use_cache`` False keeps
    stores opened here off the persistent embedding cache.
    """

    def __init__(
        self,
        metrics: Sequence[Metric],
        *,
        embedder: EmbeddingStore | EmbedderSettings | None = None,
        code_embedder: EmbeddingStore | EmbedderSettings | None = None,
        options: ScoreOptions | None = None,
        use_cache: bool = True,
    ) -> None:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise DivtraceError(f"a metric is listed twice: {names}")
        if not metrics:
            raise DivtraceError("no metrics to score")
        self.metrics = list(metrics)
        self._embedder_source = embedder
        self._code_embedder_source = code_embedder
        self.embedder: EmbeddingStore | None = None
        self.code_embedder: EmbeddingStore | None = None
        self.options = options or ScoreOptions()
        self.use_cache = use_cache
        self._prepared = False

    @property
    def needs_generator_vocab(self) -> bool:
        """True when a metric reads the generator's vocabulary size (EAD with tokenizer ``generator``): the caller
        then passes each checkpoint's to :meth:`score`."""
        return any(metric.needs_generator_vocab for metric in self.metrics)

    def prepare(self) -> None:
        """Load every metric's model and the embedders it needs, so a metric that cannot run fails before any work.

        Raises DivtraceError when a code-embedding metric is asked for without a code embedder.
        """
        if self._prepared:
            return
        needs_code = [m.name for m in self.metrics if m.uses_code_embeddings]
        if needs_code and self._code_embedder_source is None:
            raise DivtraceError(
                f"metric(s) {', '.join(needs_code)} need a code embedder: give code_embedder (the study's: "
                "microsoft/unixcoder-base), or --code-embedder"
            )
        for metric in self.metrics:
            metric.prepare()
        if any(m.uses_embeddings for m in self.metrics):
            self.embedder = self._open(self._embedder_source or EmbedderSettings())
        if needs_code:
            assert self._code_embedder_source is not None
            self.code_embedder = self._open(self._code_embedder_source)
        self._prepared = True

    def _open(self, source: EmbeddingStore | EmbedderSettings) -> EmbeddingStore:
        if isinstance(source, EmbeddingStore):
            return source
        return EmbeddingStore(source, cache=None if self.use_cache else False)

    def metric_settings(self, vocab_size: int | None = None) -> dict[str, dict[str, Any]]:
        """Each metric's settings as used on records whose generator vocabulary size is ``vocab_size`` (what
        :meth:`score` is given; EAD records the V it used), by metric name."""
        context = ScoringContext(vocab_size=vocab_size)
        return {metric.name: metric.settings_used(context) for metric in self.metrics}

    def settings(self) -> dict[str, Any]:
        """Every option that determines the numbers: metrics, embedders (with their cache keys), options.

        Call after :meth:`prepare` (the embedders' cache keys are known once they are open)."""
        return {
            "metrics": self.metric_settings(),
            "embedder": _store_settings(self.embedder) if any(m.uses_embeddings for m in self.metrics) else None,
            "code_embedder": (
                _store_settings(self.code_embedder) if any(m.uses_code_embeddings for m in self.metrics) else None
            ),
            "code_tasks": "from the task registry (Task.code)",
            **self.options.settings(),
        }

    def score(
        self,
        records: Sequence[SampleRecord],
        verdicts: Verdicts | None = None,
        *,
        vocab_size: int | None = None,
        progress: ProgressSink | None = None,
    ) -> ScoreResult:
        """Score ``records`` (see the module docstring for what is computed).

        Args:
            records: sample records with ``checkpoint`` and ``task`` (readers fill them in; missing labels count
                as ``default``) and at least 2 responses each.
            verdicts: per prompt, the samples' correctness and answers (``correct`` subset, answer metrics).
            vocab_size: the generator tokenizer's vocabulary size, for metrics that ask for it
                (:attr:`needs_generator_vocab`: EAD with tokenizer ``generator``); recorded in the settings.
            progress: where :class:`~divtrace.progress.ProgressEvent` values go, by ``step``: ``loading models``
                (before the first score only), ``embedding`` (texts), ``<metric>`` (prompts; NLI: pairs) and
                ``<metric> across-input`` (prompts; NLI: pairs), each announced with ``done`` 0 and its total
                (``embedding`` only when a text needs encoding). Stage and unit are left empty for the caller.
        """
        if not records:
            raise DivtraceError("no sample records to score")
        records, unencodable = encodable_records(records)
        if not self._prepared:
            emit(progress, 0, None, "", step="loading models")
        self.prepare()
        context = ScoringContext(embeddings=self.embedder, code_embeddings=self.code_embedder, vocab_size=vocab_size)
        groups = self._groups(records, verdicts)
        uses_embeddings = self.embedder is not None and any(m.uses_embeddings for m in self.metrics)
        if uses_embeddings:
            assert self.embedder is not None
            every_text = [text for record in records for text in record.scored_texts()]
            self.embedder.embed(every_text, progress=scoped(progress, step="embedding"))
        confused = self._indistinguishable(groups) if uses_embeddings else {}
        rows: list[dict[str, Any]] = []
        across_rows: list[tuple[str, str, str, int, float]] = []
        for metric in self.metrics:
            rows += self._score_metric(metric, groups, context, confused, progress)
            across_rows += self._across_input(metric, records, context, progress)
        per_prompt = pd.DataFrame(rows)
        if per_prompt.empty:
            per_prompt = pd.DataFrame(columns=PER_PROMPT_COLUMNS)
        for column in _COUNT_COLUMNS:
            per_prompt[column] = per_prompt[column].astype("Int64")
        across = pd.DataFrame(across_rows, columns=ACROSS_COLUMNS)
        settings = {
            **self.settings(),
            "metrics": self.metric_settings(vocab_size),
            "generator_vocab_size": vocab_size,
            "unencodable_texts": unencodable,
            "indistinguishable_texts": self._tally(groups, confused) if uses_embeddings else None,
        }
        stats = vars(self.embedder.stats).copy() if self.embedder is not None else {}
        return ScoreResult(per_prompt, across, settings, stats, self.options.bootstrap)

    def _indistinguishable(self, groups: list[_Group]) -> dict[tuple[str, ...], list[int]]:
        """Per distinct group of texts: the positions of texts the sentence embedder confuses with another one."""
        assert self.embedder is not None
        found: dict[tuple[str, ...], list[int]] = {}
        for group in groups:
            if group.texts not in found:
                found[group.texts] = indistinguishable_positions(group.texts, self.embedder.embed)
        return found

    def _tally(self, groups: list[_Group], confused: dict[tuple[str, ...], list[int]]) -> dict[str, Any]:
        """``settings["indistinguishable_texts"]``: counted once per prompt, over its K outputs (subset ``all``)."""
        assert self.embedder is not None
        tally = IndistinguishableTally()
        for group in groups:
            if group.subset == "all":
                texts = [group.texts[position] for position in confused[group.texts]]
                tally.add(*_key(group.record), texts)
        return tally.settings(self.embedder.settings.model)

    def _groups(self, records: Sequence[SampleRecord], verdicts: Verdicts | None) -> list[_Group]:
        if "correct" in self.options.subsets and verdicts is None:
            verdicts = {}
        groups: list[_Group] = []
        for record in records:
            texts = tuple(record.scored_texts())
            found = verdicts.get(_key(record)) if verdicts is not None else None
            if found is not None and len(found.correct) != len(texts):
                raise DivtraceError(f"{_key(record)}: {len(found.correct)} verdicts for {len(texts)} responses")
            answers = found.answers if found is not None else None
            groups.append(_Group(record, "all", texts, answers))
            if "curves" in self.options.subsets:
                for size in curve_levels(len(texts)):
                    groups.append(_Group(record, f"k={size}", texts[:size], answers[:size] if answers else None))
            if "correct" in self.options.subsets and found is not None:
                chosen = [i for i, ok in enumerate(found.correct) if ok]
                if len(chosen) >= 2:
                    picked_answers = tuple(found.answers[i] for i in chosen)
                    groups.append(_Group(record, "correct", tuple(texts[i] for i in chosen), picked_answers))
        return groups

    def _score_metric(
        self,
        metric: Metric,
        groups: list[_Group],
        context: ScoringContext,
        confused: dict[tuple[str, ...], list[int]],
        progress: ProgressSink | None,
    ) -> list[dict[str, Any]]:
        applies = {task: _applies(metric, task) for task in {_cell(g.record)[1] for g in groups}}
        # answer metrics score cells whose verifier extracts answers (not IFEval's, which extracts none)
        answered_cells = {_cell(g.record) for g in groups if g.answers is not None and any(a for a in g.answers)}
        eligible = [
            g
            for g in groups
            if applies[_cell(g.record)[1]]
            and (metric.input == "texts" or (g.answers is not None and _cell(g.record) in answered_cells))
        ]
        inputs: list[Sequence[Any]] = [g.texts if metric.input == "texts" else g.answers or () for g in eligible]
        if not inputs:
            return []
        own_progress = scoped(progress, step=metric.name)
        if metric.progress_unit is not None:
            values, diagnostics = _score_inputs(metric, inputs, replace(context, progress=own_progress))
        else:
            values, diagnostics = _score_by_prompt(metric, eligible, inputs, context, own_progress)
        rows = []
        for index, (group, value) in enumerate(zip(eligible, values, strict=True)):
            checkpoint, task = _cell(group.record)
            row = {
                "checkpoint": checkpoint,
                "task": task,
                "prompt_id": group.record.prompt_id,
                "metric": metric.name,
                "subset": group.subset,
                "value": float(value),
                "n_outputs": len(inputs[index]),
                "unclosed_thinking": unclosed_count(group.record),
                "indistinguishable_texts": len(confused[group.texts]) if metric.uses_embeddings else None,
            }
            row.update({name: float(array[index]) for name, array in diagnostics.items()})
            rows.append(row)
        return rows

    def _across_input(
        self, metric: Metric, records: Sequence[SampleRecord], context: ScoringContext, progress: ProgressSink | None
    ) -> list[tuple[str, str, str, int, float]]:
        if metric.input != "texts":
            return []
        cells: dict[tuple[str, str], list[SampleRecord]] = {}
        for record in records:
            cells.setdefault(_cell(record), []).append(record)
        chosen: list[tuple[tuple[str, str], list[str]]] = []
        for cell, members in cells.items():
            if not _applies(metric, cell[1]):
                continue
            positions = across_input_sample(
                len(members), self.options.across_input_prompts, self.options.across_input_seed
            )
            if len(positions) >= 2:
                chosen.append((cell, [members[p].scored_texts()[0] for p in positions]))
        if not chosen:
            return []
        inputs = [texts for _, texts in chosen]
        own_progress = scoped(progress, step=f"{metric.name} across-input")
        if metric.progress_unit is not None:
            values, _ = _score_inputs(metric, inputs, replace(context, progress=own_progress), diagnostics=False)
        else:
            prompts = sum(len(texts) for texts in inputs)
            emit(own_progress, 0, prompts, PROMPTS)
            values, _ = _score_inputs(metric, inputs, context, diagnostics=False)
            emit(own_progress, prompts, prompts, PROMPTS)
        return [(*cell, metric.name, len(texts), float(v)) for (cell, texts), v in zip(chosen, values, strict=True)]


def _score_inputs(
    metric: Metric, inputs: Sequence[Sequence[Any]], context: ScoringContext, diagnostics: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One ``score_groups`` call: its values clipped into the metric's range, and its diagnostics (if asked)."""
    values = metric.score_groups(inputs, context)
    sizes = np.array([len(group) for group in inputs], dtype=np.float64)
    found = metric.group_diagnostics(inputs, context) if diagnostics else {}
    return metric.value_range.clip(values, sizes), found


def _score_by_prompt(
    metric: Metric,
    eligible: list[_Group],
    inputs: list[Sequence[Any]],
    context: ScoringContext,
    progress: ProgressSink | None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score ``inputs`` (the groups of ``eligible``, consecutive per prompt) :data:`PROMPTS_PER_CALL` prompts at a
    time, reporting the prompts done (``prompts``) before the first call and after each."""
    prompt_of = np.cumsum([0] + [a.record is not b.record for a, b in itertools.pairwise(eligible)])
    prompts = int(prompt_of[-1]) + 1
    emit(progress, 0, prompts, PROMPTS)
    values: list[np.ndarray] = []
    diagnostics: dict[str, list[np.ndarray]] = {}
    for first in range(0, prompts, PROMPTS_PER_CALL):
        last = min(first + PROMPTS_PER_CALL, prompts)
        start, stop = np.searchsorted(prompt_of, [first, last])
        chunk_values, chunk_diagnostics = _score_inputs(metric, inputs[start:stop], context)
        values.append(chunk_values)
        for name, array in chunk_diagnostics.items():
            diagnostics.setdefault(name, []).append(array)
        emit(progress, last, prompts, PROMPTS)
    return np.concatenate(values), {name: np.concatenate(arrays) for name, arrays in diagnostics.items()}


def _applies(metric: Metric, task: str) -> bool:
    """Whether ``metric`` scores ``task``: not-for-code metrics skip code tasks, code-only ones skip tasks known
    not to be code (an unknown label gets every metric asked for)."""
    code = is_code_task(task)
    if code and not metric.suitable_for_code:
        return False
    return not (metric.code_only and code is False)


def _cell(record: SampleRecord) -> tuple[str, str]:
    return record.checkpoint or DEFAULT_TASK, record.task or DEFAULT_TASK


def _key(record: SampleRecord) -> tuple[str, str, str]:
    return (*_cell(record), record.prompt_id)


def _store_settings(store: EmbeddingStore | None) -> dict[str, Any] | None:
    if store is None:
        return None
    return {**store.settings.model_dump(mode="json"), "cache_key": store.model_key}


def summarise(per_prompt: pd.DataFrame, across: pd.DataFrame, bootstrap: BootstrapSettings) -> pd.DataFrame:
    """Per (checkpoint, task, metric, subset) over finite per-prompt values: prompts, mean, std (ddof 1), bootstrap
    CI of the mean, the mean of each diagnostic column, and (subset ``all``) the across-input value and the
    unclosed-thinking count of the cell's prompts, and (subset ``all``, sentence-embedding metrics) the count of
    the cell's indistinguishable texts."""
    diagnostics = [c for c in per_prompt.columns if c not in PER_PROMPT_COLUMNS]
    rows = []
    keys = ["checkpoint", "task", "metric", "subset"]
    for (checkpoint, task, metric, subset), frame in per_prompt.groupby(keys, sort=True):
        values = frame["value"].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        # one cell per call: a cell's CI must not depend, even in the last bit, on which other cells were scored
        estimate = cell_mean_cis({"cell": values}, bootstrap)["cell"]
        row = {
            "checkpoint": checkpoint,
            "task": task,
            "metric": metric,
            "subset": subset,
            "n_prompts": int(values.size),
            "mean": estimate.mean,
            "std": float(np.std(values, ddof=1)) if values.size > 1 else float("nan"),
            "ci_low": estimate.low,
            "ci_high": estimate.high,
            **{column: _cell_count(frame[column], subset) for column in _COUNT_COLUMNS},
        }
        row.update({name: float(frame[name].mean()) for name in diagnostics})
        rows.append(row)
    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "across_input"] + diagnostics)
    for column in _COUNT_COLUMNS:
        summary[column] = summary[column].astype("Int64")
    across_values = across.rename(columns={"value": "across_input"})[["checkpoint", "task", "metric", "across_input"]]
    merged = summary.merge(
        across_values.assign(subset="all"), on=["checkpoint", "task", "metric", "subset"], how="left"
    )
    return merged[SUMMARY_COLUMNS + diagnostics]


def _cell_count(counts: pd.Series, subset: object) -> int | None:
    """The sum of a per-prompt count column over a cell: for subset ``all`` when any prompt has it, else None."""
    return int(counts.sum()) if subset == "all" and counts.notna().any() else None


def write_result(result: ScoreResult, out_dir: str | Path) -> list[Path]:
    """Write the tables (Parquet, plus CSV for the summary) and the settings JSON atomically into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_table_atomic(result.per_prompt, out / "per_prompt.parquet"),
        write_table_atomic(result.across_input, out / "across_input.parquet"),
        write_table_atomic(result.summary, out / "summary.parquet"),
        write_table_atomic(result.summary, out / "summary.csv"),
        write_json_atomic(
            {"settings": result.settings, "embedding_stats": result.embedding_stats}, out / "score_settings.json"
        ),
    ]


def unit_table(result: ScoreResult) -> pd.DataFrame:
    """A run's per-unit score table: the per-prompt rows plus the across-input rows (subset
    :data:`ACROSS_INPUT`, prompt_id ``""``, ``n_outputs`` = the prompts used)."""
    no_counts: dict[str, Any] = dict.fromkeys(_COUNT_COLUMNS, pd.NA)
    across = result.across_input.rename(columns={"n_prompts": "n_outputs"}).assign(
        prompt_id="", subset=ACROSS_INPUT, **no_counts
    )
    table = pd.concat([result.per_prompt, across[PER_PROMPT_COLUMNS]], ignore_index=True)
    for column in _COUNT_COLUMNS:
        table[column] = table[column].astype("Int64")
    return table
