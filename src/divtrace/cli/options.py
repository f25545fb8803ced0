"""Option types shared by several commands, so that a flag means the same thing, with the same help, everywhere.

Naming: ``--task`` always names a task (a name from ``divtrace tasks`` or a task ``.yaml``); ``--checkpoint`` and
``--task-label`` are labels written into records; ``--limit`` takes the first N prompts; ``-k`` is samples per
prompt. Booleans are ``--flag/--no-flag`` pairs without a value.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from divtrace.cli.console import OutputFormat


def flag(help: str, *names: str) -> typer.models.OptionInfo:
    """A boolean ``--x/--no-x`` option: shown without a value placeholder, so nobody types ``--x true``."""
    option: typer.models.OptionInfo = typer.Option(*names, metavar="", help=help)
    return option


#: ``--strip-thinking/--no-strip-thinking`` of the commands that read samples (score, verify, analyze).
StripThinkingOption = Annotated[
    bool,
    flag(
        "remove <think>...</think> chain-of-thought from the outputs before verifying and scoring, as the study "
        "did, and count outputs whose thinking never closed (off: the samples as stored)",
        "--strip-thinking/--no-strip-thinking",
    ),
]
#: ``--strict-k/--no-strict-k`` of the commands that read samples (score, verify, analyze).
StrictKOption = Annotated[
    bool,
    flag(
        "refuse samples whose prompts have different numbers of outputs (K) within a checkpoint and task (off: "
        "each such checkpoint x task is cut to its smallest K, the first K outputs of each prompt, with a warning)",
        "--strict-k/--no-strict-k",
    ),
]
SkipInvalidOption = Annotated[
    bool,
    flag(
        "report and skip records that break the sample schema (never a missing input path)",
        "--skip-invalid/--no-skip-invalid",
    ),
]
#: ``--wait/--no-wait`` of the commands that write a run directory (run, analyze, report).
WaitOption = Annotated[
    bool,
    flag(
        "when another divtrace command is using the run directory, wait until it is done (default: stop at once, "
        "naming it)",
        "--wait/--no-wait",
    ),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="how to print the table: table, csv or json")]
RecordTaskOption = Annotated[
    str | None,
    typer.Option(
        "--task", help="task of the records that carry none (a name from `divtrace tasks`: its verifier applies)"
    ),
]
RecordCheckpointOption = Annotated[
    str | None, typer.Option("--checkpoint", help="checkpoint label of the records that carry none")
]


class InputFormat(str, enum.Enum):
    """``--input-format``: what the sample files are (``auto``: each file's content says)."""

    auto = "auto"
    divtrace = "divtrace"
    jsonl = "jsonl"
    parquet = "parquet"
    lm_eval = "lm-eval"
    lighteval = "lighteval"


InputFormatOption = Annotated[
    InputFormat,
    typer.Option(
        help="format of every input: auto (from each file's content), divtrace, jsonl, parquet, lm-eval, lighteval"
    ),
]
TaskMapOption = Annotated[
    list[str] | None,
    typer.Option(
        help="SOURCE=TASK, repeatable: verify records whose task is SOURCE (as logged, e.g. gsm8k_cot_zeroshot) "
        "with divtrace task TASK"
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(help="directory with task data (TASK.jsonl/.parquet): references of records that carry none"),
]
