"""``divtrace analyze``: verify, score, analyze and report samples generated elsewhere, along a lineage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, say, stderr_console
from divtrace.cli.options import (
    DataDirOption,
    FormatOption,
    InputFormat,
    InputFormatOption,
    RecordTaskOption,
    SkipInvalidOption,
    StripThinkingOption,
    TaskMapOption,
    flag,
)
from divtrace.cli.outcome import print_outcome, run_stages

if TYPE_CHECKING:
    from divtrace.runs.stages import RunProgress, StageReport


@command()
def analyze(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="sample files or directories (JSONL/Parquet with a checkpoint column, lm-eval samples_*.jsonl, "
            "lighteval details); NAME=PATH sets the checkpoint of PATH's records"
        ),
    ],
    out: Annotated[Path, typer.Option(help="run directory for the imported samples, scores, analysis, report")],
    lineage: Annotated[
        list[str] | None,
        typer.Option(
            help="a chain of checkpoints, base first: 'base>sft>dpo>rl' (NAME:STAGE sets a stage label); "
            "repeat for branches"
        ),
    ] = None,
    variant: Annotated[
        list[str] | None, typer.Option(help="NAME=OF: NAME is checkpoint OF sampled with thinking suppressed")
    ] = None,
    study: Annotated[Path | None, typer.Option(help="take the lineage (and metrics) from this study file")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated metrics (default: ead,sbert,vendi)")] = None,
    embedder: Annotated[str | None, typer.Option(help="sentence-transformers id or path")] = None,
    nli_model: Annotated[str | None, typer.Option(help="id or path of an MNLI classifier (adds nli)")] = None,
    task: RecordTaskOption = None,
    task_map: TaskMapOption = None,
    input_format: InputFormatOption = InputFormat.auto,
    data_dir: DataDirOption = None,
    verify: Annotated[
        bool, flag("verify verifiable tasks (needed for the decomposition)", "--verify/--no-verify")
    ] = True,
    report: Annotated[bool, flag("also write report/index.html and summary.md", "--report/--no-report")] = True,
    skip_invalid: SkipInvalidOption = False,
    strip_thinking: StripThinkingOption = True,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Analyze samples generated elsewhere along a lineage: verify, score, analyze (and report), resumably."""
    from divtrace.runs.imported import (
        SampleSource,
        import_choices,
        import_samples,
        imported_study,
        read_sources,
        run_tasks,
    )
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.stages import stage_analyze, stage_report, stage_score, stage_verify
    from divtrace.study import load_study
    from divtrace.tasks.names import parse_task_map

    sources = [SampleSource.parse(text) for text in inputs]
    checks.existing_inputs([source.path for source in sources])
    checks.writable_directory(out)
    names = checks.metric_list(metrics)
    mapping = parse_task_map(task_map or [])
    if study is not None:
        checks.existing_inputs([study], "study")
    choices = import_choices(
        load_study(str(study)) if study is not None else None,
        lineage or [],
        variant or [],
        metrics=names,
        embedder=embedder,
        nli_model=nli_model,
    )
    with stderr_console().status("reading samples"):
        records, problems = read_sources(
            sources, skip_invalid=skip_invalid, strip_thinking=strip_thinking, fmt=input_format.value
        )
    if task is not None:
        records = [r if r.task and r.task != "default" else r.model_copy(update={"task": task}) for r in records]
    for problem in problems:
        note(problem, "skipped")
    chosen = imported_study(
        choices.checkpoints,
        records,
        metrics=choices.metrics,
        embedder=choices.embedder,
        nli_model=choices.nli_model,
        data_dir=str(data_dir) if data_dir else None,
        task_map=mapping,
    )
    layout = RunLayout(out)
    imported = import_samples(chosen, records, layout, strip_thinking=strip_thinking)
    say(
        f"imported {sum(imported.counts.values())} prompts: "
        + ", ".join(f"{c}/{t} {n}" for (c, t), n in sorted(imported.counts.items()))
    )
    tasks = run_tasks(chosen)
    stages: list[tuple[str, Callable[[RunProgress], StageReport]]] = []
    if verify:
        stages.append(("verify", lambda p: stage_verify(chosen, layout, tasks, p)))
    stages += [
        ("score", lambda p: stage_score(chosen, layout, tasks, p)),
        ("analyze", lambda p: stage_analyze(chosen, layout, tasks)),
    ]
    if report:
        stages.append(("report", lambda p: stage_report(chosen, layout, tasks)))
    print_outcome(run_stages(stages), out, output_format)
