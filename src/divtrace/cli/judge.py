"""``divtrace judge``: the quality of sampled outputs by an LLM judge, with the study's protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, print_frame, say
from divtrace.cli.options import (
    FormatOption,
    InputFormat,
    InputFormatOption,
    RecordCheckpointOption,
    RecordTaskOption,
    SkipInvalidOption,
    StripThinkingOption,
    flag,
)
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError
from divtrace.progress import scoped


def parse_protocols(values: list[str] | None) -> dict[str, str] | None:
    """``--protocol TASK=PROTOCOL`` values as a mapping (None when none is given); DivtraceError naming a value
    that is not ``TASK=PROTOCOL``."""
    if not values:
        return None
    protocols = {}
    for value in values:
        task, sep, protocol = value.partition("=")
        if not sep or not task or not protocol:
            raise DivtraceError(f"--protocol {value!r}: expected TASK=PROTOCOL, e.g. tldr=kirk_summary")
        protocols[task] = protocol
    return protocols


@command()
def judge(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="sample files or directories (as `divtrace score` reads them), or run directories"),
    ],
    out: Annotated[Path, typer.Option(help="directory for judgments.parquet, quality.csv and the answer cache")],
    judge_model: Annotated[
        str, typer.Option("--judge-model", help="the judge model as the endpoint serves it (the study: gpt-4.1-mini)")
    ],
    endpoint: Annotated[
        str | None,
        typer.Option(help="an OpenAI-compatible API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1"),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="the environment variable holding the endpoint's API key")
    ] = "OPENAI_API_KEY",
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help="TASK=PROTOCOL (kirk_summary, arena_hard_creative, wb_score), repeatable; default: the study's for "
            "tldr, cnn_dailymail, xsum, writingprompts, wildbench"
        ),
    ] = None,
    outputs: Annotated[
        str, typer.Option(help="first: each checkpoint's first output per prompt (the study's); all: every output")
    ] = "first",
    baseline: Annotated[
        str | None,
        typer.Option(help="checkpoint the pairwise protocols compare with (default for a run directory: its base)"),
    ] = None,
    max_concurrency: Annotated[int, typer.Option(min=1, help="requests in flight at once")] = 8,
    max_retries: Annotated[int, typer.Option(min=0, help="retries of a request on 429, 5xx, timeouts")] = 6,
    timeout: Annotated[float, typer.Option(min=1.0, help="seconds one request may take")] = 120.0,
    batch_prepare: Annotated[
        Path | None,
        typer.Option("--batch-prepare", help="write OpenAI Batch API request files for the unanswered calls here"),
    ] = None,
    batch_results: Annotated[
        list[Path] | None,
        typer.Option("--batch-results", help="downloaded Batch API output or error files (repeatable)"),
    ] = None,
    output_format: FormatOption = OutputFormat.table,
    checkpoint: RecordCheckpointOption = None,
    task: RecordTaskOption = None,
    skip_invalid: SkipInvalidOption = False,
    input_format: InputFormatOption = InputFormat.auto,
    strip_thinking: StripThinkingOption = True,
    retry_refused: Annotated[
        bool,
        flag(
            "ask again the calls the server refused before (kept as errors in the cache)",
            "--retry-refused/--no-retry-refused",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap CIs")] = 1234,
    resamples: Annotated[int, typer.Option(min=1, help="bootstrap resamples")] = 1000,
) -> None:
    """Judge the quality of sampled outputs with an LLM judge (the study's protocols); print one row per
    checkpoint, task and protocol. Every answer is cached in --out: an interrupted run resumes, a rerun sends no
    request."""
    from divtrace.api import judge_samples
    from divtrace.stats.bootstrap import BootstrapSettings

    checks.existing_inputs(inputs)
    checks.writable_directory(out)
    if outputs not in ("first", "all"):
        raise DivtraceError(f"--outputs {outputs!r}: first or all")
    if batch_prepare is not None:
        checks.writable_directory(batch_prepare, "--batch-prepare")
    if batch_results:
        checks.existing_inputs(batch_results, "--batch-results file")
    if endpoint is None and batch_prepare is None and not batch_results:
        note("no --endpoint: only answers already cached in --out can be used", "note")
    with progress_display(transient=True) as display:
        outcome = judge_samples(
            inputs,
            judge_model=judge_model,
            out=out,
            endpoint=endpoint,
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            protocols=parse_protocols(protocol),
            outputs="all" if outputs == "all" else "first",
            baseline=baseline,
            batch_prepare=batch_prepare,
            batch_results=batch_results or (),
            checkpoint=checkpoint,
            task=task,
            skip_invalid=skip_invalid,
            input_format=input_format.value,
            strip_thinking=strip_thinking,
            bootstrap=BootstrapSettings(resamples=resamples, seed=seed),
            progress=scoped(display, stage="judge"),
            retry_refused=retry_refused,
        )
    for problem in outcome.skipped_records:
        note(problem, "skipped")
    if batch_prepare is not None:
        say(
            f"{outcome.requests - outcome.answered_before} of {outcome.requests} judge call(s) written to "
            f"{', '.join(str(path) for path in outcome.batch_files) or 'no file (all answered)'}; submit them to the "
            "Batch API, then run again with --batch-results FILE..."
        )
        return
    from divtrace.cli.tables import quality_table

    print_frame(outcome.quality, output_format, quality_table)
    say(
        f"{outcome.requests} judge call(s): {outcome.answered_before} answered before, {outcome.sent} sent now; "
        f"tables written to {out}"
    )
