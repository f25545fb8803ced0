"""The Python entry points: :func:`run` (a study end to end: generate and everything after, on this machine or a
Ray cluster), :func:`analyze` (samples generated elsewhere, along a lineage) and :func:`score` (diversity of sample
files or records). The command line calls the same functions; docs/architecture.md shows where each stage lives.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from divtrace.errors import DivtraceError, DivtraceWarning
from divtrace.progress import ProgressSink
from divtrace.runs.layout import RunLayout, default_run_directory
from divtrace.runs.lock import hold_run_directory
from divtrace.samples import DEFAULT_TASK, SampleRecord, read_samples
from divtrace.samples.common_k import mixed_k_settings, to_common_k
from divtrace.samples.thinking import split_record_thinking
from divtrace.score.metrics import Metric
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.scorer import (
    ACROSS_INPUT_PROMPTS,
    ACROSS_INPUT_SEED,
    OFFLINE_METRICS,
    ScoreOptions,
    Scorer,
    ScoreResult,
    build_metrics,
    verdicts_from_table,
    write_result,
)
from divtrace.score.settings import CodeEmbedderSettings, EmbedderSettings, NLISettings
from divtrace.stats.bootstrap import BootstrapSettings

if TYPE_CHECKING:
    from divtrace.analysis.pipeline import AnalysisResult
    from divtrace.executors.driver import Executor as StageExecutor
    from divtrace.judge.inputs import JudgeInputs
    from divtrace.judge.requests import JudgeResponse
    from divtrace.runs.stage import StageReport
    from divtrace.study import Study
    from divtrace.study.planned import PlannedTask
    from divtrace.study.spec import JudgeSpec

SamplesInput = str | Path | SampleRecord | Sequence[str | Path] | Sequence[SampleRecord]


def score(
    samples: SamplesInput,
    *,
    metrics: Sequence[str | Metric] | None = None,
    embedder: str | EmbedderSettings | EmbeddingStore | None = None,
    code_embedder: str | EmbedderSettings | EmbeddingStore | None = None,
    nli_model: str | NLISettings | None = None,
    ead_vocab_size: int | None = None,
    ead_tokenizer: str | None = None,
    bootstrap: BootstrapSettings | None = None,
    verdicts: pd.DataFrame | None = None,
    across_input_prompts: int = ACROSS_INPUT_PROMPTS,
    across_input_seed: int = ACROSS_INPUT_SEED,
    use_cache: bool = True,
    skip_invalid: bool = False,
    checkpoint: str | None = None,
    task: str | None = None,
    out: str | Path | None = None,
    progress: ProgressSink | None = None,
    strip_thinking: bool = True,
    input_format: str = "auto",
    strict_k: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score the diversity of sampled outputs, per prompt and per (checkpoint, task).

    Args:
        samples: sample files (JSONL, Parquet, lm-eval ``samples_*.jsonl``, lighteval details, or directories of
            them) or :class:`SampleRecord` objects.
        metrics: registry names or Metric objects; default EAD, SBERT and Vendi, plus NLI when ``nli_model`` is
            given (the study's four metrics).
        embedder: sentence-transformers id or path (default: the packaged all-MiniLM-L6-v2; the study used
            ``sentence-transformers/all-mpnet-base-v2``), settings, or a ready :class:`EmbeddingStore` (to share
            one across calls or choose its cache).
        code_embedder: the encoder of the code-embedding metrics (``code-sbert``, ``code-vendi``; the study used
            ``microsoft/unixcoder-base``), as an id or path, settings, or a ready store.
        nli_model: id or path of an MNLI classifier (the study used ``roberta-large-mnli``).
        ead_vocab_size / ead_tokenizer: EAD's V, given directly or as the size of a Hugging Face tokenizer's
            vocabulary (default 50257 for every checkpoint, the study's V).
        bootstrap: CI settings (1000 percentile resamples over prompts, seed 1234).
        verdicts: a verdict table (``divtrace verify``'s ``verdicts.parquet``): adds the ``correct`` subset (the
            correct responses of prompts with at least 2) and lets answer metrics score the extracted answers.
        across_input_prompts / across_input_seed: the across-input score uses the first response of at most this
            many prompts, sampled with this seed (the study's 500 and 1234).
        use_cache: read/write the persistent embedding cache.
        skip_invalid: skip (and report in ``settings["skipped_records"]``) records that break the schema.
        checkpoint / task: labels for records that carry none (default: the file stem, and "default").
        out: if given, write the result tables there (see :func:`write_result`).
        progress: a :data:`~divtrace.progress.ProgressSink`: it gets :class:`~divtrace.progress.ProgressEvent`
            values by step (``embedding`` in texts, each metric in prompts or pairs; see :meth:`Scorer.score`),
            their stage left empty.
        strip_thinking: remove chain-of-thought from the outputs before scoring, as the study did (see
            :mod:`divtrace.samples.thinking`; responses a record already carries are kept) and flag unclosed
            thinking (counted in the summary's ``unclosed_thinking``). False scores the records as they are.
        input_format: the format of every sample file (see :func:`~divtrace.samples.read_samples`: ``auto``, from
            each file's content, or ``divtrace``, ``jsonl``, ``parquet``, ``lm-eval``, ``lighteval``).
        strict_k: refuse samples whose prompts have different numbers of outputs within a (checkpoint, task);
            by default each such cell is cut to its smallest K, the first K outputs of each prompt, for every
            metric (:mod:`divtrace.samples.common_k`), and ``settings["mixed_k"]`` lists the cells.
        on_warning: called with each warning about the input (a cell cut to its common K); default: Python's
            :func:`warnings.warn` with :class:`~divtrace.errors.DivtraceWarning`.

    Returns:
        A :class:`ScoreResult` with per-prompt, across-input and summary tables and the settings used.

    Raises:
        DivtraceError: bad input (file, line, field), mixed K with ``strict_k``, a model that cannot load...
    """
    nli = nli_model if isinstance(nli_model, NLISettings) else NLISettings(model=nli_model) if nli_model else None
    if metrics is None:
        metrics = [*OFFLINE_METRICS, "nli"] if nli else list(OFFLINE_METRICS)
    metric_objects = build_metrics(
        metrics, nli=nli or NLISettings(), ead_vocab_size=ead_vocab_size, ead_tokenizer=ead_tokenizer
    )
    if any(metric.needs_generator_vocab for metric in metric_objects):
        raise DivtraceError(
            "EAD's tokenizer 'generator' needs each checkpoint's generator, which scoring sample files does not "
            "know: name the tokenizer (ead_tokenizer / --tokenizer) or give ead_vocab_size / --vocab-size"
        )
    scorer = Scorer(
        metric_objects,
        embedder=_embedder(embedder),
        code_embedder=_embedder(code_embedder, code=True) if code_embedder is not None else None,
        options=ScoreOptions(
            subsets=("all", "correct") if verdicts is not None else ("all",),
            across_input_prompts=across_input_prompts,
            across_input_seed=across_input_seed,
            bootstrap=bootstrap or BootstrapSettings(),
        ),
        use_cache=use_cache,
    )
    records, problems = _load(
        samples,
        skip_invalid=skip_invalid,
        checkpoint=checkpoint,
        task=task,
        strip_thinking=strip_thinking,
        input_format=input_format,
    )
    common = to_common_k(records, strict=strict_k)
    _warn(common.warnings(), on_warning)
    scorer.prepare()  # every model loads before scoring: a metric that cannot run fails before any work
    lookup = verdicts_from_table(verdicts) if verdicts is not None else None
    result = scorer.score(common.records, lookup, progress=progress)
    result.settings["skipped_records"] = [str(p) for p in problems]
    result.settings["strip_thinking"] = strip_thinking
    result.settings["mixed_k"] = mixed_k_settings(common.mixed)
    if out is not None:
        write_result(result, out)
    return result


def _load(
    samples: SamplesInput,
    *,
    skip_invalid: bool,
    checkpoint: str | None,
    task: str | None,
    strip_thinking: bool,
    input_format: str = "auto",
) -> tuple[list[SampleRecord], list[Exception]]:
    items = [samples] if isinstance(samples, str | Path | SampleRecord) else list(samples)
    if not items:
        raise DivtraceError("no samples given")
    if all(isinstance(item, SampleRecord) for item in items):
        records = [
            split_record_thinking(
                item.model_copy(
                    update={
                        "checkpoint": item.checkpoint or checkpoint or "default",
                        "task": item.task or task or DEFAULT_TASK,
                    }
                ),
                strip=strip_thinking,
            )
            for item in items
            if isinstance(item, SampleRecord)
        ]
        for record in records:
            if len(record.scored_texts()) < 2:
                raise DivtraceError(
                    f"record {record.prompt_id!r} ({record.checkpoint}/{record.task}) has fewer than 2 "
                    "responses; per-prompt diversity needs K >= 2"
                )
        return records, []
    if any(isinstance(item, SampleRecord) for item in items):
        raise DivtraceError("pass either sample files or SampleRecord objects, not both")
    result = read_samples(
        [Path(str(item)) for item in items],
        fmt=input_format,
        skip_invalid=skip_invalid,
        checkpoint=checkpoint,
        task=task,
        strip_thinking=strip_thinking,
    )
    return result.records, list(result.problems)


def _warn(messages: Sequence[str], on_warning: Callable[[str], None] | None) -> None:
    """Give each warning to ``on_warning``, or to :func:`warnings.warn` as a :class:`DivtraceWarning`."""
    for message in messages:
        if on_warning is not None:
            on_warning(message)
        else:
            warnings.warn(message, DivtraceWarning, stacklevel=3)


def _embedder(
    embedder: str | EmbedderSettings | EmbeddingStore | None, *, code: bool = False
) -> EmbedderSettings | EmbeddingStore:
    """A ready store or settings as they are; an id or path as settings (None: the packaged default sentence
    encoder; ``code``: code-embedder settings, the study's pooling and length)."""
    if isinstance(embedder, EmbeddingStore | EmbedderSettings):
        return embedder
    kind = CodeEmbedderSettings if code else EmbedderSettings
    return kind(**({"model": embedder} if embedder else {}))


Executor = Literal["local", "ray"]


@dataclass(frozen=True)
class RunOutcome:
    """What a study run or an analysis of imported samples did, and where its outputs are.

    Attributes:
        directory: the run directory (``study.yaml``, ``samples/``, ``scores/``, ``analysis/``, ``report/``).
        reports: per stage, the units it ran and skipped, and its notes (e.g. tasks that could not be verified).
    """

    directory: Path
    reports: list[StageReport]

    def analysis(self) -> AnalysisResult:
        """The analysis tables the run wrote (``checkpoint_means``, ``retained``, ``collapse_sites``, ``table1``...).

        Raises DivtraceError when the run has no analysis (it stopped before the analyze stage).
        """
        from divtrace.analysis.pipeline import read_analysis

        return read_analysis(RunLayout(self.directory).analysis_dir)

    @property
    def report_path(self) -> Path | None:
        """``report/index.html`` when the run wrote a report, else None."""
        path = RunLayout(self.directory).report_html
        return path if path.exists() else None


def run(
    study: Study | str | Path = "quickstart",
    out: str | Path | None = None,
    *,
    executor: Executor | None = None,
    address: str | None = None,
    tasks: list[PlannedTask] | None = None,
    progress: ProgressSink | None = None,
    on_stage: Callable[[str], None] | None = None,
    wait: bool = False,
) -> RunOutcome:
    """Run ``study`` end to end (plan, generate, verify, score, analyze, report) into ``out``; resumable.

    Args:
        study: a :class:`~divtrace.study.Study`, a study YAML file, or a preset name (``quickstart``, ``olmo3-7b``).
        out: the run directory (default ``runs/<study name>``); finished units found there are not redone.
        executor: ``local`` (this process) or ``ray`` (a Ray cluster); default: the study's ``executor.type``.
        address: the Ray cluster (``HOST:PORT`` or ``auto``); default: the study's; checked once, before any work
            (:func:`divtrace.executors.ray_connect.check_ray_address`, when
            :class:`~divtrace.executors.ray_executor.RayExecutor` joins it): a DivtraceError says what to do when no
            cluster answers. ``divtrace run`` relies on this check.
        tasks: the planned tasks when the caller already loaded them (:func:`divtrace.study.planned.plan_tasks`).
        progress: a :data:`~divtrace.progress.ProgressSink`: every stage's :class:`~divtrace.progress.ProgressEvent`.
        on_stage: called with each stage's name as it starts.
        wait: when another run holds ``out``, wait until it is done (saying so once, as a warning of the
            ``divtrace.runs.lock`` logger) instead of raising :class:`~divtrace.runs.lock.RunDirectoryInUse`.

    The run holds ``out`` from start to end (:func:`~divtrace.runs.lock.hold_run_directory`), and ``out`` belongs
    to one study: a directory whose ``study.yaml`` names another study is refused before anything in it is
    written (:func:`~divtrace.study.ownership.check_run_directory`).

    Raises:
        DivtraceError: a bad study, unavailable task data, no cluster at ``address``, ``out`` in use by another run
            (:class:`~divtrace.runs.lock.RunDirectoryInUse`) or holding another study...;
            :class:`~divtrace.errors.RunInterrupted` on Ctrl-C, counting the units finished and the shards kept of
            unfinished generations.
    """
    from divtrace.executors.driver import run_study
    from divtrace.study import Study, load_study

    chosen = study if isinstance(study, Study) else load_study(study)
    directory = Path(out) if out is not None else default_run_directory(chosen.name)
    kind = executor or chosen.executor.type
    if kind not in ("local", "ray"):
        raise DivtraceError(f"executor {kind!r}: choose local or ray")
    with (
        hold_run_directory(directory, "divtrace.run", wait=wait, wait_flag="wait=True"),
        _executor(kind, chosen, address) as runner,  # Ray: the address is checked before any work
    ):
        reports = run_study(chosen, directory, runner, tasks=tasks, progress=progress, on_stage=on_stage)
    return RunOutcome(directory, reports)


@contextlib.contextmanager
def _executor(kind: Executor, study: Study, address: str | None) -> Iterator[StageExecutor]:
    """The executor ``kind`` for ``study``, joined (Ray) for the block."""
    if kind == "ray":
        from divtrace.executors.ray_executor import RayExecutor

        with RayExecutor(study.executor, address=address) as ray:
            yield ray
    else:
        from divtrace.executors.local import LocalExecutor

        yield LocalExecutor()


def analyze(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    lineage: Sequence[str] = (),
    variants: Sequence[str] = (),
    study: Study | str | Path | None = None,
    metrics: Sequence[str] | None = None,
    embedder: str | None = None,
    nli_model: str | None = None,
    task: str | None = None,
    task_map: Mapping[str, str] | None = None,
    input_format: str = "auto",
    data_dir: str | Path | None = None,
    verify: bool = True,
    report: bool = True,
    skip_invalid: bool = False,
    strip_thinking: bool = True,
    strict_k: bool = False,
    progress: ProgressSink | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
    on_import: Callable[[dict[tuple[str, str], int]], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    wait: bool = False,
    judge: JudgeSpec | None = None,
    homogenization: bool | None = None,
) -> RunOutcome:
    """Verify, score, analyze (and report) samples generated elsewhere, along a lineage, into the run directory
    ``out``; resumable like :func:`run`.

    Args:
        inputs: sample files or directories (divtrace JSONL/Parquet, lm-eval ``samples_*.jsonl``, lighteval
            details); ``NAME=PATH`` sets the checkpoint label of PATH's records.
        lineage: chains of checkpoints, base first (``"base>sft>dpo>rl"``, ``NAME:STAGE`` sets a stage label).
        variants: ``NAME=OF``: NAME is checkpoint OF sampled with thinking suppressed.
        study: take the lineage (and metrics and models) from this study instead of ``lineage``.
        metrics, embedder, nli_model: the scoring settings (default: the study's, else ead, sbert, vendi).
        task: the task of records that carry none. task_map: logged task name -> divtrace task, for verification.
        input_format: ``auto`` (each file's content decides), ``divtrace``, ``jsonl``, ``parquet``, ``lm-eval``,
            ``lighteval``.
        data_dir: task data, for records without references.
        verify, report: run the verify stage (needed for the decomposition) and write the report.
        strict_k: refuse samples whose prompts have different numbers of outputs within a (checkpoint, task);
            by default each such cell is cut to its smallest K, the first K outputs of each prompt, before anything
            is verified or scored (:mod:`divtrace.samples.common_k`), and ``analysis_settings.json`` lists the
            cells (``mixed_k``).
        progress: a :data:`~divtrace.progress.ProgressSink`: every stage's :class:`~divtrace.progress.ProgressEvent`.
        on_stage: called with each stage's name as it starts.
        on_problem: called with each record skipped under ``skip_invalid``; on_import with the prompts imported
            per (checkpoint, task); on_warning with each warning about the input (a cell cut to its common K;
            default: :func:`warnings.warn` with :class:`~divtrace.errors.DivtraceWarning`).
        wait: when another run holds ``out``, wait until it is done instead of raising (as :func:`run`).
        judge: an LLM judge of quality (a study's ``judge:`` section, :class:`~divtrace.study.spec.JudgeSpec`; default:
            ``study``'s): the judge stage runs after verification, and the analysis and report put diversity
            against quality. Its endpoint is checked once the samples are imported, before any stage works.
        homogenization: also compare every pair of checkpoints, per task (``analysis/homogenization.csv`` and a
            heatmap in the report); default: ``study``'s setting, else off.

    The analysis holds ``out`` from start to end, and ``out`` belongs to one study, as for :func:`run`: a run
    directory of ``divtrace run`` (or of another study) is refused before anything in it is written.

    Raises:
        DivtraceError: a missing or malformed input (file, line, field), a lineage checkpoint without samples,
            mixed K with ``strict_k``, ``out`` in use or holding another study...
    """
    from divtrace.executors.driver import run_stages, study_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.study import Study, load_study
    from divtrace.study.imported import SampleSource, import_choices, import_samples, imported_study, read_sources
    from divtrace.study.planned import run_tasks

    with hold_run_directory(out, "divtrace.analyze", wait=wait, wait_flag="wait=True"):
        base_study = study if isinstance(study, Study) or study is None else load_study(study)
        choices = import_choices(base_study, lineage, variants, metrics=metrics, embedder=embedder, nli_model=nli_model)
        sources = [SampleSource.parse(str(text)) for text in inputs]
        records, problems = read_sources(
            sources, skip_invalid=skip_invalid, strip_thinking=strip_thinking, fmt=input_format
        )
        if task is not None:
            records = with_task(records, task)
        for problem in problems:
            if on_problem is not None:
                on_problem(problem)
        common = to_common_k(records, strict=strict_k)  # the labels are final: cut each cell before any work
        _warn(common.warnings(), on_warning)
        records = common.records
        chosen = imported_study(
            choices.checkpoints,
            records,
            metrics=choices.metrics,
            embedder=choices.embedder,
            nli_model=choices.nli_model,
            data_dir=str(data_dir) if data_dir else None,
            task_map=task_map,
            mixed_k=common.mixed,
        )
        judging = judge if judge is not None else base_study.judge if base_study is not None else None
        if judging is not None:
            chosen = chosen.with_judge(judging)
        homogenizing = homogenization if homogenization is not None else bool(base_study and base_study.homogenization)
        if homogenizing:
            chosen = chosen.with_homogenization(True)
        layout = RunLayout(out)
        imported = import_samples(chosen, records, layout, strip_thinking=strip_thinking)
        if on_import is not None:
            on_import(dict(imported.counts))
        tasks = run_tasks(chosen)
        stages = study_stages(chosen, tasks, layout, generate=False, verify=verify, report=report)
        for stage in stages:
            stage.check_ready(layout)
        reports = run_stages(stages, layout, LocalExecutor(), progress=progress, on_stage=on_stage)
        return RunOutcome(Path(out), reports)


def with_task(records: Sequence[SampleRecord], task: str) -> list[SampleRecord]:
    """``records`` with ``task`` given to those that carry none (no label, or the ``default`` label)."""
    from divtrace.samples import DEFAULT_TASK

    return [r if r.task and r.task != DEFAULT_TASK else r.model_copy(update={"task": task}) for r in records]


@dataclass
class JudgeOutcome:
    """What :func:`judge` did.

    Attributes:
        out: the output directory (``judgments.parquet``, ``quality.csv``, ``cache.jsonl``).
        judgments: one row per judge call (and per output not sent); empty after ``batch_prepare``.
        quality: one row per (checkpoint, task, protocol); empty after ``batch_prepare``.
        requests: the distinct judge calls the inputs need (two outputs judged with the same texts share one);
            ``answered_before``: of them, answered by the cache (or the batch results) before any request was sent;
            ``sent``: sent to the endpoint now.
        batch_files: the Batch API request files written (``batch_prepare``).
        skipped_records: the invalid records skipped (``skip_invalid``), one line each.
    """

    out: Path
    judgments: pd.DataFrame
    quality: pd.DataFrame
    requests: int
    answered_before: int
    sent: int
    batch_files: list[Path]
    skipped_records: list[str]


def judge_samples(
    samples: str | Path | Sequence[str | Path],
    *,
    judge_model: str,
    out: str | Path,
    endpoint: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    max_concurrency: int = 8,
    max_retries: int = 6,
    timeout: float = 120.0,
    protocols: Mapping[str, str] | None = None,
    outputs: Literal["first", "all"] = "first",
    baseline: str | None = None,
    batch_prepare: str | Path | None = None,
    batch_results: Sequence[str | Path] = (),
    checkpoint: str | None = None,
    task: str | None = None,
    skip_invalid: bool = False,
    input_format: str = "auto",
    strip_thinking: bool = True,
    bootstrap: BootstrapSettings | None = None,
    progress: ProgressSink | None = None,
    retry_refused: bool = False,
) -> JudgeOutcome:
    """Judge the quality of sampled outputs with an LLM judge, the study's protocols (:mod:`divtrace.judge`).

    Args:
        samples: sample files or directories (as :func:`score` reads them), or run directories (``study.yaml``: its
            samples, read as the run stores them, and each checkpoint's lineage base as the default baseline).
        judge_model: the judge model as the endpoint serves it (the study: ``gpt-4.1-mini``).
        out: the output directory: ``judgments.parquet``, ``quality.csv`` and ``cache.jsonl`` (every answer, by a
            key of everything that shaped it: an interrupted run resumes and a rerun sends no request).
        endpoint: an OpenAI-compatible API root (OpenAI, a vLLM or SGLang server...); the API key is read from
            ``api_key_env``. None: only the cache and ``batch_results`` answer.
        max_concurrency / max_retries / timeout: requests in flight, retries (429 and 5xx, honouring
            ``Retry-After``), seconds per request.
        protocols: task -> protocol; default: the study's protocol of each of the inputs' tasks it judged.
        outputs: ``first`` output per prompt (the study's) or ``all``.
        baseline: the checkpoint a pairwise-against-baseline protocol compares with (default for a run
            directory: each checkpoint's lineage base).
        batch_prepare: write OpenAI Batch API request files for the calls not yet answered into this directory,
            and stop (no tables).
        batch_results: downloaded Batch API output (and error) files: their answers are kept in the cache first.
        checkpoint / task: labels for records that carry none; skip_invalid / input_format / strip_thinking: how
            sample files are read (see :func:`score`).
        bootstrap: the quality CIs' settings (1000 resamples over prompts, seed 1234).
        progress: gets the judge calls as they are answered.
        retry_refused: ask again the calls the server refused before (kept in the cache as errors, e.g. HTTP 400).

    Raises:
        DivtraceError: bad input (naming the file and line, or the record without a reference or checklist), no
            judged task, an unreachable endpoint or a refused key (before any request), answers missing without
            an endpoint.
    """
    from divtrace.io_atomic import write_atomic, write_table_atomic
    from divtrace.judge.aggregate import quality_table
    from divtrace.judge.batch import read_batch_results, write_batch_requests
    from divtrace.judge.cache import JudgmentCache, resolve, store_results
    from divtrace.judge.client import JudgeClient, JudgeEndpoint
    from divtrace.judge.inputs import JudgeInputs, is_run_directory
    from divtrace.judge.pipeline import JudgeConfig, judgments_table, plan_requests, study_protocols

    inputs = JudgeInputs()
    skipped: list[str] = []
    paths = [Path(samples)] if isinstance(samples, str | Path) else [Path(item) for item in samples]
    if not paths:
        raise DivtraceError("no samples given")
    for path in paths:
        if is_run_directory(path):
            _read_run_directory(path, inputs)
            continue
        records, problems = _load(
            path,
            skip_invalid=skip_invalid,
            checkpoint=checkpoint,
            task=task,
            strip_thinking=strip_thinking,
            input_format=input_format,
        )
        skipped += [str(problem) for problem in problems]
        inputs.add(records, str(path))
    tasks = sorted({cell_task for _, cell_task in inputs.cells})
    chosen = dict(protocols) if protocols is not None else study_protocols(tasks)
    if not any(name in chosen for name in tasks):
        raise DivtraceError(
            f"none of the tasks of the samples ({', '.join(tasks)}) has a judge protocol: the study judged tldr, "
            "cnn_dailymail, xsum (kirk_summary), writingprompts (arena_hard_creative) and wildbench (wb_score); "
            "name one per task (--protocol TASK=PROTOCOL)"
        )
    config = JudgeConfig(judge_model, chosen, outputs, baseline, {} if baseline else inputs.bases)
    work = plan_requests(inputs.cells, config, inputs.where)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = JudgmentCache(out / "cache.jsonl")
    if batch_results:
        store_results(cache, work.requests, read_batch_results([Path(f) for f in batch_results]))
    distinct = {request.key: request for request in work.requests}  # the same call for two outputs: asked once
    pending = [request for key, request in distinct.items() if not _answered(cache.get(key), retry_refused)]
    answered_before = len(distinct) - len(pending)
    if batch_prepare is not None:
        files = write_batch_requests(pending, Path(batch_prepare))
        return JudgeOutcome(out, pd.DataFrame(), pd.DataFrame(), len(distinct), answered_before, 0, files, skipped)
    client = None
    if endpoint is not None:
        client = JudgeClient(
            JudgeEndpoint(
                base_url=endpoint,
                api_key_env=api_key_env,
                max_concurrency=max_concurrency,
                max_retries=max_retries,
                timeout=timeout,
            )
        )
        if pending:
            client.check(judge_model)
    responses = resolve(work.requests, cache, client, progress, retry_errors=retry_refused)
    judgments = judgments_table(work, responses)
    quality = quality_table(judgments, bootstrap)
    write_table_atomic(judgments, out / "judgments.parquet")
    write_atomic(out / "quality.csv", lambda tmp: quality.to_csv(tmp, index=False))
    return JudgeOutcome(out, judgments, quality, len(distinct), answered_before, len(pending), [], skipped)


def _answered(cached: JudgeResponse | None, retry_refused: bool) -> bool:
    """Whether a cached answer stands (a refusal does not when it is to be asked again)."""
    return cached is not None and not (retry_refused and cached.text is None)


def _read_run_directory(path: Path, inputs: JudgeInputs) -> None:
    """Add every (checkpoint, task) of the run directory ``path`` that has samples (read as the run stores them,
    checked complete first) and each checkpoint's lineage base to ``inputs``."""
    from divtrace.study.loading import load_study
    from divtrace.tasks.yaml_task import task_file_label

    layout = RunLayout(path)
    study = load_study(layout.study_file)
    graph = study.graph()
    for checkpoint in study.checkpoints:
        inputs.bases[checkpoint.name] = graph.base_of(checkpoint.name)
        for spec in study.tasks:
            task = task_file_label(spec.name) or spec.name
            layout.check_samples(checkpoint.name, task, f"judge of {checkpoint.name}/{task}")
            records = layout.read_samples(checkpoint.name, task)
            if records:
                labelled = [r.model_copy(update={"checkpoint": checkpoint.name, "task": task}) for r in records]
                inputs.add(labelled, str(layout.samples_dir(checkpoint.name, task)))
