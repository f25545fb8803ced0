"""``divtrace verify``: a verdict per sample against its task's reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, print_frame, say
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
)
from divtrace.cli.progress import progress_display
from divtrace.cli.tables import verify_table
from divtrace.progress import scoped


@command()
def verify(
    inputs: Annotated[list[Path], typer.Argument(help="sample files or directories (JSONL, Parquet, lm-eval...)")],
    out: Annotated[Path | None, typer.Option(help="directory for verdicts.parquet and verify_summary.*")] = None,
    task: RecordTaskOption = None,
    task_map: TaskMapOption = None,
    input_format: InputFormatOption = InputFormat.auto,
    data_dir: DataDirOption = None,
    output_format: FormatOption = OutputFormat.table,
    skip_invalid: SkipInvalidOption = False,
    strip_thinking: StripThinkingOption = True,
    strict_k: StrictKOption = False,
) -> None:
    """Check each sample against its task's reference: a verdict per sample; accuracy, pass@k, majority vote."""
    from divtrace.api import with_task
    from divtrace.samples import read_samples
    from divtrace.samples.common_k import mixed_k_settings, to_common_k
    from divtrace.tasks.names import parse_task_map
    from divtrace.verify.pipeline import verify_records, write_verify_result

    checks.existing_inputs(inputs)
    mapping = parse_task_map(task_map or [])
    if out is not None:
        checks.writable_directory(out)
    read = read_samples(inputs, skip_invalid=skip_invalid, strip_thinking=strip_thinking, fmt=input_format.value)
    for problem in read.problems:
        note(str(problem), "skipped")
    common = to_common_k(with_task(read.records, task) if task is not None else read.records, strict=strict_k)
    for warning in common.warnings():
        note(warning, "warning")
    with progress_display(transient=True) as display:
        result = verify_records(
            common.records,
            data_dir=data_dir,
            task_map=mapping,
            progress=scoped(display, stage="verify"),
            strip_thinking=strip_thinking,
        )
    result.settings["strip_thinking"] = strip_thinking
    result.settings["mixed_k"] = mixed_k_settings(common.mixed)
    if out is not None:
        write_verify_result(result, out)
    for line in result.skipped:
        note(line, "not verifiable")
    print_frame(result.summary, output_format, verify_table)
    if out is not None:
        say(f"verdicts written to {out}")
