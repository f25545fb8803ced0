"""``divtrace run``: a study end to end (or its plan, with ``--dry-run``)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, print_frame, say, stderr_console
from divtrace.cli.options import FormatOption, WaitOption, flag
from divtrace.cli.outcome import print_outcome
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from divtrace.plan.rows import PlanRow
    from divtrace.plan.summary import PlanSummary
    from divtrace.study import Study


class ExecutorOption(str, enum.Enum):
    """``--executor``: this process, or a Ray cluster."""

    local = "local"
    ray = "ray"


@command()
def run(
    study: Annotated[str | None, typer.Argument(help="study .yaml file or preset (default: quickstart)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default: runs/STUDY-NAME)")] = None,
    dry_run: Annotated[
        bool, flag("print the plan (shards, samples, tokens, time) and stop", "--dry-run/--no-dry-run")
    ] = False,
    executor: Annotated[
        ExecutorOption | None, typer.Option(help="where the work runs (default: the study's executor)")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="ray: the cluster address (HOST:PORT or 'auto'; default: the study's)")
    ] = None,
    detail: Annotated[
        bool, flag("with the plan, a row per (checkpoint, task), not only per checkpoint", "--detail/--no-detail")
    ] = False,
    output_format: FormatOption = OutputFormat.table,
    wait: WaitOption = False,
) -> None:
    """Run a study end to end: plan, generate, verify, score, analyze, report; resumable, skipping done work."""
    from divtrace.runs.layout import RunLayout, default_run_directory
    from divtrace.runs.lock import hold_run_directory
    from divtrace.study import load_study
    from divtrace.study.ownership import check_run_directory

    chosen = load_study(study or "quickstart")
    directory = out or default_run_directory(chosen.name)
    if not dry_run:
        checks.writable_directory(directory, "--out")
    check_run_directory(RunLayout(directory), chosen)  # another study's directory: refused before it is touched
    if dry_run:
        _plan_and_run(chosen, directory, True, executor, address, detail, output_format)
        return
    with hold_run_directory(directory, "divtrace run", wait=wait, say=note):  # held until the run ends
        _plan_and_run(chosen, directory, False, executor, address, detail, output_format)


def _plan_and_run(
    chosen: Study,
    directory: Path,
    dry_run: bool,
    executor: ExecutorOption | None,
    address: str | None,
    detail: bool,
    output_format: OutputFormat,
) -> None:
    """The plan of ``chosen`` in ``directory``, then (unless ``dry_run``) the run."""
    from divtrace.api import run as run_study_api
    from divtrace.plan.rows import plan_study, plan_without_data
    from divtrace.runs.layout import RunLayout
    from divtrace.study.planned import plan_tasks

    use_ray = (executor.value if executor is not None else chosen.executor.type) == "ray"
    if use_ray and not dry_run:  # fail fast: before the task data loads, which can take minutes on a real study
        from divtrace.executors.ray_connect import check_ray_address

        with stderr_console().status("connecting to the Ray cluster"):
            check_ray_address(address if address is not None else chosen.executor.address)
    try:
        with stderr_console().status("loading task data"):
            tasks = plan_tasks(chosen)
        rows = plan_study(chosen, RunLayout(directory), tasks)
        data_note = None
    except DivtraceError as err:
        if not dry_run:
            raise
        data_note = (
            f"task data is not available here ({_first_sentence(str(err))}), so the plan counts each task's N; "
            "offline, a study's data_dir or DIVTRACE_DATA_DIR names a directory of TASK.jsonl files (divtrace tasks "
            "show NAME says how to make one)"
        )
        rows = plan_without_data(chosen)
    _print_plan(chosen, directory, rows, dry_run, output_format, detail, data_note)
    if chosen.caveat:
        note(chosen.caveat, "caveat", "bold yellow")
    if dry_run:
        return
    if use_ray:
        say("generate, verify and score run on the Ray cluster")
    with progress_display() as display:
        outcome = run_study_api(
            chosen,
            directory,
            executor="ray" if use_ray else "local",
            address=address,
            tasks=tasks,
            progress=display,
            on_stage=display.begin,
        )
    print_outcome(outcome.reports, directory, output_format)


def _print_plan(
    study: Study,
    directory: Path,
    rows: list[PlanRow],
    dry_run: bool,
    output_format: OutputFormat,
    detail: bool,
    data_note: str | None,
) -> None:
    """The plan: its totals and estimate first (with the notes that matter), then a line per checkpoint, then with
    ``detail`` a row per (checkpoint, task); on stdout for ``--dry-run`` (CSV/JSON: every row), on stderr before a
    real run."""
    from rich.table import Table

    from divtrace.cli.console import stdout_console
    from divtrace.plan.summary import summarize_plan
    from divtrace.progress import format_duration

    summary = summarize_plan(study, rows)
    if dry_run and output_format is not OutputFormat.table:
        print_frame(summary.frame(), output_format, lambda frame: Table())
        return
    console = stdout_console() if dry_run else stderr_console()

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    tasks = list(dict.fromkeys(row.task for row in rows))
    names = ", ".join(tasks)
    conditions = len(summary.checkpoints) - len(study.checkpoints)
    sampled = f"{len(study.checkpoints)} checkpoint(s)" + (
        f" + {conditions} sweep condition(s) ({sweep_settings(study)})" if conditions else ""
    )
    line(f"plan of study {study.name} -> {directory}: {sampled} x {len(tasks)} task(s)"
         + (f" ({names})" if len(names) <= 80 else ""))  # fmt: skip
    if summary.samples_to_do:
        kind = "a guess: some figures are assumed, see the notes" if summary.guess else "from measured figures"
        total = (
            f"{summary.samples_to_do:,} samples to generate, at most {summary.max_tokens_to_do:,} tokens; "
            f"estimate ~{format_duration(summary.total_seconds)} ({kind})"
        )
        line(total + (f", ~{summary.gpu_hours:,.0f} GPU-hours" if summary.gpu_hours else ""))
        parts = [f"generation ~{format_duration(summary.seconds)}"]
        parts += [f"{stage.stage} ~{format_duration(stage.seconds)}" for stage in summary.stages]
        line("  " + ", ".join(parts))
    else:
        line(f"{summary.samples:,} samples, all generated already (nothing to generate)")
    notes = [*([data_note] if data_note else []), *summary.notes]
    for text in notes:
        _plan_note(console, text)
    header = ("checkpoint", "backend", "model", "tasks", "samples", "max tokens", "status", "generation")
    cells = [
        (c.checkpoint, c.backend, c.model, str(c.tasks), f"{c.samples:,}", f"{c.max_tokens:,}", c.status,
         f"{format_duration(c.seconds)} at {c.rate.label}")
        for c in summary.checkpoints
    ]  # fmt: skip
    for text in aligned([header, *cells], numeric=frozenset({3, 4, 5})):
        line(text)
    if detail:
        console.print(_detail_table(summary))
    elif dry_run:
        line("a row per (checkpoint, task): --detail; every row as CSV or JSON: --format csv|json")


def sweep_settings(study: Study) -> str:
    """The study's sweep in words: ``3 setting(s) of temperature x top_p`` (empty without a sweep)."""
    if study.sweep is None:
        return ""
    return f"{len(study.sweep.settings())} setting(s) of {' x '.join(study.sweep.swept())}"


def aligned(rows: list[tuple[str, ...]], numeric: frozenset[int] = frozenset()) -> list[str]:
    """``rows`` as lines of columns two spaces apart, the ``numeric`` ones right-aligned; no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        padded = zip(row, widths, strict=True)
        cells = [cell.rjust(width) if i in numeric else cell.ljust(width) for i, (cell, width) in enumerate(padded)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _plan_note(console: Console, text: str) -> None:
    """``note: text`` in the plan on ``console`` (stdout for a dry run), wrapped like :func:`note`."""
    import textwrap

    from divtrace.cli.console import NOTE_WIDTH

    width = NOTE_WIDTH if not console.is_terminal else max(40, console.width)
    for part in textwrap.wrap(f"note: {text}", width, subsequent_indent="  ", break_long_words=False):
        console.print(part, markup=False, highlight=False, soft_wrap=True)


def _detail_table(summary: PlanSummary) -> Table:
    """The plan's rows, a (checkpoint, task) per line, with each checkpoint's subtotal after its rows."""
    from rich.table import Table

    from divtrace.progress import format_duration

    table = Table("checkpoint", "task", "backend", "prompts", "K", "samples", "shards", "max tokens", "status",
                  "estimate", title=f"plan of study {summary.study}, per (checkpoint, task)")  # fmt: skip
    for subtotal in summary.checkpoints:
        for estimate in summary.rows:
            row = estimate.row
            if row.checkpoint == subtotal.checkpoint:
                table.add_row(escape(row.checkpoint), escape(row.task), row.backend, str(row.prompts), str(row.k),
                              f"{row.samples:,}", str(row.shards), f"{row.max_tokens:,}",
                              "done" if row.done else "to do", format_duration(estimate.seconds))  # fmt: skip
        table.add_row(
            f"[bold]{escape(subtotal.checkpoint)}[/]", f"{subtotal.tasks} task(s)", subtotal.backend,
            str(subtotal.prompts), "", f"{subtotal.samples:,}", str(subtotal.shards), f"{subtotal.max_tokens:,}",
            subtotal.status, f"{format_duration(subtotal.seconds)} at {escape(subtotal.rate.label)}",
            end_section=True,
        )  # fmt: skip
    return table


def _first_sentence(message: str, limit: int = 140) -> str:
    """The first line of ``message`` up to its second ``": "``, first sentence end or parenthesis, at most ``limit``
    characters."""
    text = message.strip().splitlines()[0] if message.strip() else ""
    text = ": ".join(text.split(": ")[:2])  # "task X: cannot load Y: ExceptionName: details" -> "task X: cannot load Y"
    for end in (" (", ". "):
        if end in text:
            text = text[: text.index(end)]
    return text if len(text) <= limit else text[: limit - 1] + "…"
