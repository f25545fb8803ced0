"""The Python entry point: ``divtrace.score(samples)`` does what ``divtrace score`` does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.metrics import Metric
from divtrace.metrics.embeddings import EmbeddingStore
from divtrace.progress import Progress
from divtrace.samples import DEFAULT_TASK, SampleRecord, read_samples
from divtrace.samples.thinking import split_record_thinking
from divtrace.scoring.scorer import (
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
from divtrace.settings import CodeEmbedderSettings, EmbedderSettings, NLISettings
from divtrace.stats.bootstrap import BootstrapSettings

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
    progress: Progress | None = None,
    strip_thinking: bool = True,
    input_format: str = "auto",
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
        ead_vocab_size / ead_tokenizer: EAD's V, given directly or as the generator's tokenizer (default 50257).
        bootstrap: CI settings (1000 percentile resamples over prompts, seed 1234).
        verdicts: a verdict table (``divtrace verify``'s ``verdicts.parquet``): adds the ``correct`` subset (the
            correct responses of prompts with at least 2) and lets answer metrics score the extracted answers.
        across_input_prompts / across_input_seed: the across-input score uses the first response of at most this
            many prompts, sampled with this seed (the study's 500 and 1234).
        use_cache: read/write the persistent embedding cache.
        skip_invalid: skip (and report in ``settings["skipped_records"]``) records that break the schema.
        checkpoint / task: labels for records that carry none (default: the file stem, and "default").
        out: if given, write the result tables there (see :func:`write_result`).
        progress: :data:`divtrace.progress.Progress` callback ``(label, done, total, unit)`` (see
            :meth:`Scorer.score`); a former ``(stage, done, total)`` callback is still accepted.
        strip_thinking: remove chain-of-thought from the outputs before scoring, as the study did (see
            :mod:`divtrace.samples.thinking`; responses a record already carries are kept) and flag unclosed
            thinking (counted in the summary's ``unclosed_thinking``). False scores the records as they are.
        input_format: the format of every sample file (see :func:`~divtrace.samples.read_samples`: ``auto``, from
            each file's content, or ``divtrace``, ``jsonl``, ``parquet``, ``lm-eval``, ``lighteval``).

    Returns:
        A :class:`ScoreResult` with per-prompt, across-input and summary tables and the settings used.
    """
    nli = nli_model if isinstance(nli_model, NLISettings) else NLISettings(model=nli_model) if nli_model else None
    if metrics is None:
        metrics = [*OFFLINE_METRICS, "nli"] if nli else list(OFFLINE_METRICS)
    metric_objects = build_metrics(
        metrics, nli=nli or NLISettings(), ead_vocab_size=ead_vocab_size, ead_tokenizer=ead_tokenizer
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
    scorer.prepare()  # every model loads first: a metric that cannot run fails before any work
    records, problems = _load(
        samples,
        skip_invalid=skip_invalid,
        checkpoint=checkpoint,
        task=task,
        strip_thinking=strip_thinking,
        input_format=input_format,
    )
    result = scorer.score(records, verdicts_from_table(verdicts) if verdicts is not None else None, progress=progress)
    result.settings["skipped_records"] = [str(p) for p in problems]
    result.settings["strip_thinking"] = strip_thinking
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


def _embedder(
    embedder: str | EmbedderSettings | EmbeddingStore | None, *, code: bool = False
) -> EmbedderSettings | EmbeddingStore:
    """A ready store or settings as they are; an id or path as settings (None: the packaged default sentence
    encoder; ``code``: code-embedder settings, the study's pooling and length)."""
    if isinstance(embedder, EmbeddingStore | EmbedderSettings):
        return embedder
    kind = CodeEmbedderSettings if code else EmbedderSettings
    return kind(**({"model": embedder} if embedder else {}))
