"""``divtrace analyze``: verify, score, analyze and report samples generated elsewhere, along a lineage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, say
from divtrace.cli.options import (
    DataDirOption,
    FormatOption,
    InputFormat,
    InputFormatOption,
    RecordTaskOption,
    SkipInvalidOption,
    StrictKOption,
    StripThinkingOption,
    TaskMapOption,
    WaitOption,
    flag,
)
from divtrace.cli.outcome import print_outcome
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError

if TYPE_CHECKING:
    from divtrace.study.spec import JudgeSpec


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
    strict_k: StrictKOption = False,
    output_format: FormatOption = OutputFormat.table,
    wait: WaitOption = False,
    judge_endpoint: Annotated[
        str | None, typer.Option("--judge-endpoint", help="an OpenAI-compatible API root for the LLM judge")
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model", help="judge quality with this model (the study: gpt-4.1-mini) at --judge-endpoint"
        ),
    ] = None,
    judge_protocol: Annotated[
        list[str] | None,
        typer.Option("--judge-protocol", help="TASK=PROTOCOL, repeatable (default: the study's for its judged tasks)"),
    ] = None,
    judge_outputs: Annotated[
        str, typer.Option("--judge-outputs", help="first (the study's) or all outputs per prompt")
    ] = "first",
    judge_baseline: Annotated[
        str | None, typer.Option("--judge-baseline", help="checkpoint compared with (default: each lineage's base)")
    ] = None,
    judge_api_key_env: Annotated[
        str, typer.Option("--judge-api-key-env", help="environment variable holding the judge endpoint's API key")
    ] = "OPENAI_API_KEY",
    homogenization: Annotated[
        bool | None,
        typer.Option(
            "--homogenization/--no-homogenization",
            help="also compare every pair of checkpoints per task: analysis/homogenization.csv and a heatmap in the "
            "report (default: the study's setting, else off)",
        ),
    ] = None,
) -> None:
    """Analyze samples generated elsewhere along a lineage: verify, (judge,) score, analyze (and report),
    resumably."""
    from divtrace.api import analyze as analyze_samples
    from divtrace.runs.lock import hold_run_directory
    from divtrace.study.imported import SampleSource
    from divtrace.tasks.names import parse_task_map

    checks.existing_inputs([SampleSource.parse(text).path for text in inputs])
    checks.writable_directory(out)
    names = checks.metric_list(metrics)
    mapping = parse_task_map(task_map or [])
    if study is not None:
        checks.existing_inputs([study], "study")
    judge = judge_spec(judge_endpoint, judge_model, judge_protocol, judge_outputs, judge_baseline, judge_api_key_env)

    def imported(counts: dict[tuple[str, str], int]) -> None:
        say(
            f"imported {sum(counts.values())} prompts: "
            + ", ".join(f"{c}/{t} {n}" for (c, t), n in sorted(counts.items()))
        )

    with hold_run_directory(out, "divtrace analyze", wait=wait, say=note), progress_display() as display:
        outcome = analyze_samples(
            inputs,
            out,
            lineage=lineage or [],
            variants=variant or [],
            study=study,
            metrics=names,
            embedder=embedder,
            nli_model=nli_model,
            task=task,
            task_map=mapping,
            input_format=input_format.value,
            data_dir=data_dir,
            verify=verify,
            report=report,
            skip_invalid=skip_invalid,
            strip_thinking=strip_thinking,
            strict_k=strict_k,
            progress=display,
            on_stage=display.begin,
            on_problem=lambda problem: note(problem, "skipped"),
            on_import=imported,
            on_warning=lambda message: note(message, "warning"),
            judge=judge,
            homogenization=homogenization,
        )
    print_outcome(outcome.reports, out, output_format)


def judge_spec(
    endpoint: str | None,
    model: str | None,
    protocols: list[str] | None,
    outputs: str,
    baseline: str | None,
    api_key_env: str,
) -> JudgeSpec | None:
    """The judge the ``--judge-*`` flags ask for (None without ``--judge-model``); DivtraceError when a flag is
    missing or wrong."""
    from divtrace.cli.judge import parse_protocols
    from divtrace.study.spec import JudgeSpec

    if model is None:
        if endpoint is not None or protocols:
            raise DivtraceError("--judge-endpoint and --judge-protocol need --judge-model (the judge model's name)")
        return None
    if endpoint is None:
        raise DivtraceError("--judge-model needs --judge-endpoint (an OpenAI-compatible API root)")
    if outputs not in ("first", "all"):
        raise DivtraceError(f"--judge-outputs {outputs!r}: first or all")
    return JudgeSpec(
        endpoint=endpoint,
        model=model,
        api_key_env=api_key_env,
        protocols=parse_protocols(protocols),
        outputs="all" if outputs == "all" else "first",
        baseline=baseline,
    )
