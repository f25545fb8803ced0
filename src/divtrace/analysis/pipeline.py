"""The analyze stage: per-prompt scores (and verdicts) in, every analysis table out, written atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divtrace.analysis.collapse import (
    SIGN_CONVENTION,
    checkpoint_means,
    collapse_sites,
    edge_table,
    headline,
    retained_table,
    wide_scores,
)
from divtrace.analysis.cot import thinking_ablation
from divtrace.analysis.curves import correct_per_prompt, diversity_curves, passk_table
from divtrace.analysis.homogenization import homogenization_table
from divtrace.analysis.qfd import (
    CI_INCLUDES_ZERO_EXPLANATION,
    OUTSIDE_UNIT_EXPLANATION,
    PAIRINGS,
    ZERO_TOLERANCE,
    Pairing,
    quality_filtered_decomposition,
)
from divtrace.analysis.quality import (
    ARENA_HARD_CREATIVE,
    BASELINE_NOTE,
    OPTIONAL_QUALITY_COLUMNS,
    QUALITY_INPUT_COLUMNS,
    diversity_quality_table,
    quality_cells,
    quality_edges_table,
    quality_protocols,
)
from divtrace.analysis.sweep import NOT_REACHED, SweepInputs, recovery_table, sweep_table
from divtrace.analysis.table1 import PAPER_SOURCE, PAPER_STUDY, table1_rows, table_one
from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_json_atomic, write_table_atomic
from divtrace.runs.layout import read_table
from divtrace.runs.outputs import UnreadableOutputError
from divtrace.samples.common_k import MixedK, mixed_k_settings
from divtrace.stats.bootstrap import BootstrapSettings
from divtrace.study.lineage import LineageGraph

SCORE_COLUMNS = ["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"]
#: Optional score column: the prompt's outputs whose thinking never closed (older score tables lack it).
OPTIONAL_SCORE_COLUMNS = ["unclosed_thinking"]
VERDICT_INPUT_COLUMNS = ["checkpoint", "task", "prompt_id", "sample_index", "correct"]
#: The analysis settings, next to the tables.
SETTINGS_FILE = "analysis_settings.json"
#: Tables an analysis written by an older divtrace may lack: read back empty (the report says to re-run analyze,
#: or leaves the section out).
_OPTIONAL_TABLES = frozenset({"table1", "diversity_quality", "quality_edges", "homogenization", "sweep", "recovery"})
#: Tables written only when the analysis was asked for them (``settings`` holds the entry named here then).
_ON_REQUEST_TABLES = {"homogenization": "homogenization", "sweep": "sweep", "recovery": "sweep"}


@dataclass
class AnalysisResult:
    """Every table of the analyze stage (column lists: the ``*_COLUMNS`` constants of each module).

    Attributes:
        checkpoint_means: per checkpoint x task x metric (subset ``all``): mean, std, bootstrap CI.
        retained: per graph checkpoint x task x metric: D(c) / D(base) with a paired CI.
        edges: per edge x task x metric: delta, delta as % of base, paired CIs, significance.
        collapse_sites: per lineage x task x metric: the collapse site (the edge with the largest significant
            loss) and its share of the lineage's loss, or the ``status`` saying why there is none.
        qfd: quality-filtered decomposition of base -> c (and parent -> no-think variant) on verifiable tasks,
            unpaired as in the paper by default (see :mod:`divtrace.analysis.qfd`).
        thinking: thinking on vs suppressed: diversity and accuracy.
        curves: diversity vs k.
        passk: pass@k next to diversity (long form, one row per metric).
        headline: Table 1 per task, long form (see :func:`headline_table`).
        table1: the study's Table 1: per lineage, each stage's change as % of base averaged over tasks, and
            retained %, with task-stratified CIs (see :mod:`divtrace.analysis.table1`).
        diversity_quality: per task x metric x checkpoint: diversity and quality (a judge's win rate or WB-Score,
            pass@1 on verifiable tasks), each with its CI (see :mod:`divtrace.analysis.quality`).
        quality_edges: per edge x task x metric: the stage's diversity change (% of base) and quality change
            (points), with a one-line sentence.
        homogenization: per task x metric x unordered pair of checkpoints (each with itself included): how alike
            their outputs are, mean over shared prompts with its CI (see :mod:`divtrace.analysis.homogenization`);
            empty unless asked for.
        sweep: per checkpoint x sweep setting x task x metric: diversity with its CI and the quality of the same
            samples (see :mod:`divtrace.analysis.sweep`); empty for a study without a sweep.
        recovery: per post-trained swept checkpoint x task x metric: the first setting whose diversity reaches the
            base's at the study's setting, or ``not reached in the sweep``, and the quality there.
        settings: what determined the numbers (bootstrap with its seed, lineages, pairs, inputs seen) and the sign
            convention of every change (``sign_convention``: negative = diversity lost).
    """

    checkpoint_means: pd.DataFrame
    retained: pd.DataFrame
    edges: pd.DataFrame
    collapse_sites: pd.DataFrame
    qfd: pd.DataFrame
    thinking: pd.DataFrame
    curves: pd.DataFrame
    passk: pd.DataFrame
    headline: pd.DataFrame = field(default_factory=pd.DataFrame)
    table1: pd.DataFrame = field(default_factory=pd.DataFrame)
    diversity_quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    quality_edges: pd.DataFrame = field(default_factory=pd.DataFrame)
    homogenization: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    recovery: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{name: table}`` for every table, in field order (the names used for files)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "settings"}


def analyze(
    scores: pd.DataFrame,
    verdicts: pd.DataFrame | None,
    graph: LineageGraph,
    *,
    bootstrap: BootstrapSettings | None = None,
    qfd_pairing: Pairing = "unpaired",
    study_name: str | None = None,
    mixed_k: Sequence[MixedK] = (),
    quality: pd.DataFrame | None = None,
    homogenization: pd.DataFrame | None = None,
    sweep: SweepInputs | None = None,
) -> AnalysisResult:
    """Run every analysis on per-prompt scores along ``graph``.

    Args:
        scores: one row per (checkpoint, task, prompt_id, metric, subset) with columns :data:`SCORE_COLUMNS`;
            NaN values are skipped per metric. ``subset`` is ``all``, ``correct`` or ``k=N``.
        verdicts: one row per sample (:data:`VERDICT_INPUT_COLUMNS`), or None / empty when nothing is verifiable.
        graph: the lineage graph. Checkpoints scored but not in the graph appear in the per-checkpoint tables
            (means, curves, pass@k) only, and are listed in ``settings``.
        bootstrap: resamples, confidence and seed (default: :class:`BootstrapSettings`).
        qfd_pairing: the quality-filtered decomposition's form: ``"unpaired"`` (the paper's: each checkpoint's
            D_correct over its own qualifying prompts) or ``"paired"`` (prompts qualifying in both).
        study_name: the study's name; for ``olmo3-7b`` Table 1 carries the published row next to ours.
        mixed_k: the (checkpoint, task) whose imported samples were cut to their smallest K before scoring
            (:mod:`divtrace.samples.common_k`), recorded in ``settings["mixed_k"]`` with the rule.
        quality: the LLM judge's quality table, one row per (checkpoint, task, protocol) with columns
            :data:`divtrace.analysis.quality.QUALITY_INPUT_COLUMNS` (and ``baseline``, ``n_empty``), or None / empty
            when no judge ran: then ``diversity_quality`` and ``quality_edges`` cover the verifiable tasks only
            (pass@1 from the verdicts). No other table depends on it.
        homogenization: the homogenisation stage's per-prompt similarities (columns of
            :data:`divtrace.score.homogenization.PROMPT_SIMILARITY_COLUMNS`), or None when not asked for: then the
            ``homogenization`` table stays empty and is not written.
        sweep: the sweep's conditions with their scores, verdicts and judge's quality, or None for a study without
            a sweep: then the ``sweep`` and ``recovery`` tables stay empty and are not written.

    Returns:
        An :class:`AnalysisResult`; deterministic for given inputs (every CI is seeded from ``bootstrap.seed``).

    Raises:
        DivtraceError: a required column is missing, ``qfd_pairing`` is unknown, or a (checkpoint, task,
            prompt_id, metric, subset) key or a (checkpoint, task, prompt_id, sample_index) verdict key occurs twice;
            the quality table lacks a column, names an unknown protocol, repeats a (checkpoint, task, protocol) or
            rates one task with two protocols.
    """
    if qfd_pairing not in PAIRINGS:
        raise DivtraceError(f"qfd_pairing must be one of {list(PAIRINGS)}, got {qfd_pairing!r}")
    settings = bootstrap or BootstrapSettings()
    scores = _normalise_scores(scores)
    verdicts = _normalise_verdicts(verdicts)
    quality = _normalise_quality(quality)
    wide_all = wide_scores(scores, "all")
    wide_correct = wide_scores(scores, "correct")
    n_correct = _wide_n_outputs(scores, "correct")
    per_prompt_correct = correct_per_prompt(verdicts)
    lineages = graph.lineages()
    groups = table1_rows(graph)

    means = checkpoint_means(scores, graph, settings)
    retained = retained_table(wide_all, graph, settings)
    edges = edge_table(wide_all, graph, settings)
    sites = collapse_sites(edges, lineages)
    curves = diversity_curves(scores, settings)
    result = AnalysisResult(
        checkpoint_means=means,
        retained=retained,
        edges=edges,
        collapse_sites=sites,
        qfd=quality_filtered_decomposition(wide_all, wide_correct, n_correct, graph, settings, pairing=qfd_pairing),
        thinking=thinking_ablation(wide_all, per_prompt_correct, graph, settings),
        curves=curves,
        passk=passk_table(per_prompt_correct, curves, means),
        settings={
            "bootstrap": {
                "resamples": settings.resamples,
                "confidence": settings.confidence,
                "seed": settings.seed,
                "method": "percentile",
                "unit": "prompt (paired: resampled jointly across the checkpoints compared)",
                "qfd": "prompts resampled from the comparison's shared prompt index, jointly for both checkpoints; "
                "each mean over the drawn prompts of its own set",
                "table1": "stratified by task: each task's prompts resampled within the task, tasks fixed",
            },
            "qfd": {
                "pairing": qfd_pairing,
                "comparisons": "base -> each tree checkpoint; parent -> each variant",
                "outside_unit": OUTSIDE_UNIT_EXPLANATION,
                "delta_all_ci_includes_zero": CI_INCLUDES_ZERO_EXPLANATION,
            },
            "sign_convention": SIGN_CONVENTION,
            "collapse_site": "the stage with the largest loss whose CI excludes 0; none without a significant loss",
            "table1": {
                "study_name": study_name,
                "rows": {row.label: {"kind": row.kind, "checkpoints": list(row.checkpoints)} for row in groups},
                "paper": PAPER_SOURCE if study_name == PAPER_STUDY else None,
            },
            "lineages": {leaf: list(path) for leaf, path in lineages.items()},
            "edges": [list(edge) for edge in graph.edges()],
            "thinking_pairs": [list(pair) for pair in graph.thinking_pairs()],
            "checkpoints_not_in_graph": sorted(set(scores["checkpoint"].unique()) - set(graph.nodes)),
            "verifiable": [list(key) for key in sorted(wide_correct)],
            "qfd_zero_tolerance": ZERO_TOLERANCE,
            "mixed_k": mixed_k_settings(mixed_k),
            "n_score_rows": len(scores),
            "n_verdict_rows": 0 if verdicts is None else len(verdicts),
            "quality": {
                "source": "the judge's protocol where the judge rated the task, else pass@1 from the verdicts",
                "protocols": sorted(quality["protocol"].unique()) if quality is not None else [],
                f"{ARENA_HARD_CREATIVE}_baseline": f"win rate 0.5, CI [0.5, 0.5]: {BASELINE_NOTE}",
                "change": "child minus parent: percentage points (x 100) for win rates and pass@1, score points "
                "for the WB-Score",
                "n_quality_rows": 0 if quality is None else len(quality),
            },
        },
    )
    result.headline = headline_table(result)
    result.table1 = table_one(wide_all, graph, settings, study_name=study_name)
    result.diversity_quality = diversity_quality_table(means, quality, per_prompt_correct, graph, settings)
    result.quality_edges = quality_edges_table(edges, result.diversity_quality)
    if homogenization is not None:
        result.homogenization = homogenization_table(homogenization, list(graph.nodes), settings)
        result.settings["homogenization"] = {
            "pairs": "every unordered pair of checkpoints and each checkpoint with itself, checkpoint_a first in "
            "lineage order",
            "prompts": "the prompts both checkpoints have; mean over them with a percentile bootstrap CI",
            "n_prompt_rows": len(homogenization),
        }
    if sweep is not None:
        conditions = SweepInputs(
            sweep.conditions,
            sweep.study_values,
            _normalise_scores(sweep.scores) if not sweep.scores.empty else pd.DataFrame(columns=SCORE_COLUMNS),
            _normalise_verdicts(sweep.verdicts),
            _normalise_quality(sweep.quality),
        )
        study_quality = quality_cells(quality, per_prompt_correct, graph, settings)
        result.sweep = sweep_table(conditions, means, study_quality, per_prompt_correct, settings, graph)
        result.recovery = recovery_table(result.sweep, conditions.parameters, graph)
        result.settings["sweep"] = {
            "parameters": conditions.parameters,
            "study_setting": dict(conditions.study_values),
            "conditions": [
                {"checkpoint": c.checkpoint, "condition": c.name, **c.values(), "is_study_setting": c.is_study_setting}
                for c in conditions.conditions
            ],
            "order": "the sweep's combinations, the first parameter varying slowest",
            "reached": "the first setting in the sweep's order whose mean diversity is at least the base's at the "
            f"study's setting; else {NOT_REACHED!r}",
            "quality": "the judge's value where the judge rated the task, else pass@1; quality_change_points: there "
            "minus at the study's setting (x 100 for win rates and pass@1)",
        }
    return result


def headline_table(result: AnalysisResult) -> pd.DataFrame:
    """The study's Table 1, long form: per lineage x task x metric, each stage's change as % of base, and retained %.

    Columns :data:`divtrace.analysis.collapse.HEADLINE_COLUMNS`: lineage (its leaf), task, metric, step, parent,
    child, stage, n_prompts, change_pct_base (+ CI; negative = diversity lost), significant, is_collapse_site (the
    largest significant loss), retained_pct (+ CI) of the leaf, repeated on each row.
    """
    return headline(result.edges, result.retained, result.collapse_sites, result.settings.get("lineages", {}))


def write_analysis(result: AnalysisResult, out_dir: str | Path) -> list[Path]:
    """Write every table as ``NAME.parquet`` and ``NAME.csv``, and ``analysis_settings.json``, atomically.

    Returns the paths written, in order.
    """
    out = Path(out_dir)
    written = []
    for name, table in result.tables().items():
        if name in _ON_REQUEST_TABLES and _ON_REQUEST_TABLES[name] not in result.settings:
            continue
        written.append(write_table_atomic(table, out / f"{name}.parquet"))
        written.append(write_table_atomic(table, out / f"{name}.csv"))
    written.append(write_json_atomic(result.settings, out / SETTINGS_FILE))
    return written


def analysis_files(out_dir: str | Path, *, homogenization: bool = False, sweep: bool = False) -> list[Path]:
    """Every file :func:`write_analysis` writes to ``out_dir``, in the order it writes them (``homogenization``:
    the analysis was asked for the homogenisation table; ``sweep``: for the sweep's tables)."""
    out = Path(out_dir)
    asked = {name for name, on in (("homogenization", homogenization), ("sweep", sweep)) if on}
    names = [
        item.name
        for item in fields(AnalysisResult)
        if item.name != "settings" and (item.name not in _ON_REQUEST_TABLES or _ON_REQUEST_TABLES[item.name] in asked)
    ]
    return [out / f"{name}.{suffix}" for name in names for suffix in ("parquet", "csv")] + [out / SETTINGS_FILE]


def read_analysis(out_dir: str | Path) -> AnalysisResult:
    """The tables :func:`write_analysis` wrote to ``out_dir`` (Parquet), as an :class:`AnalysisResult`.

    A ``table1``, ``diversity_quality``, ``quality_edges`` or ``homogenization`` missing (an analysis written
    before it existed, or not asked for the homogenisation) reads back empty; any other missing table raises.

    Raises:
        DivtraceError: a table or ``analysis_settings.json`` is missing or cannot be read (naming the file).
    """
    out = Path(out_dir)
    tables = {}
    for item in fields(AnalysisResult):
        if item.name == "settings":
            continue
        path = out / f"{item.name}.parquet"
        if not path.exists() and item.name in _OPTIONAL_TABLES:
            tables[item.name] = pd.DataFrame()
            continue
        if not path.exists():
            raise DivtraceError(f"{path}: analysis table missing; run `divtrace analyze` again")
        tables[item.name] = read_table(path)
    settings_path = out / SETTINGS_FILE
    if not settings_path.exists():
        raise DivtraceError(f"{settings_path}: analysis settings missing; run `divtrace analyze` again")
    try:
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UnreadableOutputError(settings_path, f"{type(err).__name__}: {err}") from None
    return AnalysisResult(**tables, settings=settings)


def _require_columns(table: pd.DataFrame, name: str, columns: list[str]) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise DivtraceError(f"{name} table lacks column(s) {missing}; expected {columns}")


def _as_strings(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Cast the key ``columns`` of ``frame`` to strings in place (a numeric prompt id joins as text)."""
    for column in columns:
        if not pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(str)


_KEY_LABELS = {"prompt_id": "prompt", "sample_index": "sample"}


def _refuse_duplicates(frame: pd.DataFrame, name: str, noun: str, keys: list[str]) -> None:
    """Raise DivtraceError, naming the first repeated key, when two rows of ``frame`` share ``keys``."""
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        values = {key: first[key].item() if isinstance(first[key], np.generic) else first[key] for key in keys}
        example = ", ".join(f"{_KEY_LABELS.get(key, key)} {value!r}" for key, value in values.items())
        raise DivtraceError(f"{name} table has {int(duplicated.sum())} duplicate {noun}(s), e.g. {example}")


def _normalise_scores(scores: pd.DataFrame) -> pd.DataFrame:
    _require_columns(scores, "scores", SCORE_COLUMNS)
    frame = scores[SCORE_COLUMNS + [c for c in OPTIONAL_SCORE_COLUMNS if c in scores.columns]].copy()
    _as_strings(frame, ("checkpoint", "task", "prompt_id", "metric", "subset"))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(np.float64)
    frame["n_outputs"] = pd.to_numeric(frame["n_outputs"], errors="coerce").astype(np.float64)
    _refuse_duplicates(frame, "scores", "row", ["checkpoint", "task", "prompt_id", "metric", "subset"])
    return frame


def _normalise_verdicts(verdicts: pd.DataFrame | None) -> pd.DataFrame | None:
    if verdicts is None or verdicts.empty:
        return None
    _require_columns(verdicts, "verdicts", VERDICT_INPUT_COLUMNS)
    frame = verdicts[VERDICT_INPUT_COLUMNS].copy()
    _as_strings(frame, ("checkpoint", "task", "prompt_id"))
    frame["correct"] = frame["correct"].fillna(False).astype(bool)  # an unverifiable sample counts as incorrect
    _refuse_duplicates(frame, "verdicts", "sample", ["checkpoint", "task", "prompt_id", "sample_index"])
    return frame


def _normalise_quality(quality: pd.DataFrame | None) -> pd.DataFrame | None:
    """The judge's quality table with its key columns as text and its numbers as numbers; None when empty."""
    if quality is None or quality.empty:
        return None
    _require_columns(quality, "quality", QUALITY_INPUT_COLUMNS)
    optional = [column for column in OPTIONAL_QUALITY_COLUMNS if column in quality.columns]
    frame = quality[QUALITY_INPUT_COLUMNS + optional].copy()
    _as_strings(frame, ("checkpoint", "task", "protocol"))
    for column in ("n_prompts", "value", "ci_low", "ci_high", "n_unparseable", "n_empty"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    if "baseline" in frame.columns:
        frame["baseline"] = frame["baseline"].map(lambda name: "" if _absent_name(name) else str(name))
    unknown = sorted(set(frame["protocol"]) - set(quality_protocols()))
    if unknown:
        raise DivtraceError(f"quality table: unknown protocol(s) {unknown}; known: {quality_protocols()}")
    _refuse_duplicates(frame, "quality", "row", ["checkpoint", "task", "protocol"])
    protocols = frame.groupby("task")["protocol"].nunique()
    if (protocols > 1).any():
        task = str(protocols[protocols > 1].index[0])
        both = sorted(frame.loc[frame["task"] == task, "protocol"].unique())
        raise DivtraceError(f"quality table rates task {task!r} with {len(both)} protocols {both}; expected one")
    return frame


def _absent_name(value: object) -> bool:
    """Whether a name cell is empty: None, NaN, pandas NA or the empty string."""
    return value is None or value is pd.NA or value == "" or (isinstance(value, float) and np.isnan(value))


def _wide_n_outputs(scores: pd.DataFrame, subset: str) -> dict[tuple[str, str], pd.DataFrame]:
    """Like :func:`wide_scores` but with ``n_outputs`` as the values."""
    return wide_scores(scores.drop(columns="value").rename(columns={"n_outputs": "value"}), subset)
