"""What divtrace knows, as tables: ``divtrace lineages`` (study presets), ``divtrace tasks`` (and ``tasks show``),
``divtrace metrics``; and ``divtrace init`` (a starter study)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from divtrace.cli.app import CONTEXT_SETTINGS, DivtraceCommand, DivtraceGroup, app, command
from divtrace.cli.console import OutputFormat, frame_table, print_frame, say, stdout_console
from divtrace.cli.options import FormatOption, flag
from divtrace.errors import DivtraceError


@command()
def lineages(output_format: FormatOption = OutputFormat.table) -> None:
    """Show the built-in study presets and their checkpoint graphs."""
    from divtrace.study import PRESETS

    rows = []
    for name, make in PRESETS.items():
        study = make()
        for checkpoint in study.checkpoints:
            relation = checkpoint.parent or (f"variant of {checkpoint.variant_of}" if checkpoint.variant_of else "-")
            rows.append({"preset": name, "checkpoint": checkpoint.name, "model": checkpoint.model,
                         "adapter": checkpoint.adapter or "-",
                         "stage": checkpoint.stage, "parent / variant of": relation, "thinking": checkpoint.thinking,
                         "backend": checkpoint.backend})  # fmt: skip
    frame = pd.DataFrame(rows)
    if output_format is not OutputFormat.table:
        print_frame(frame, output_format, lambda f: frame_table(f, "presets"))
        return
    console = stdout_console()
    for name, make in PRESETS.items():
        study = make()
        shown = frame[frame.preset == name].drop(columns="preset")
        if (shown.adapter == "-").all():
            shown = shown.drop(columns="adapter")
        console.print(frame_table(shown, f"{name}: {study.description}"))
        for leaf, path in study.graph().lineages().items():
            console.print(f"  lineage {leaf}: {' -> '.join(path)}", markup=False)
        if study.caveat:
            console.print(f"  caveat: {study.caveat}", markup=False, style="yellow")


@command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the starter study")] = Path("study.yaml"),
    force: Annotated[bool, flag("overwrite an existing file", "--force/--no-force")] = False,
) -> None:
    """Write a commented starter study file."""
    from divtrace.study import STARTER_STUDY

    if path.exists() and not force:
        raise DivtraceError(f"{path} exists (use --force to overwrite)")
    path.write_text(STARTER_STUDY)
    say(f"wrote {path}; edit it, then: divtrace run {path} --dry-run")


tasks_app = typer.Typer(
    help="The task suite: list tasks, show a rendered prompt.",
    cls=DivtraceGroup,
    no_args_is_help=False,
    context_settings=CONTEXT_SETTINGS,
)
app.add_typer(tasks_app, name="tasks")


@tasks_app.callback(invoke_without_command=True)
def list_tasks(context: typer.Context, output_format: FormatOption = OutputFormat.table) -> None:
    """List the tasks: family, N and how they are chosen, data source, verifier, stops and token cap."""
    if context.invoked_subcommand is not None:
        return
    from divtrace.tasks import all_tasks

    frame = pd.DataFrame(
        [
            {
                "task": task.name,
                "family": task.family,
                "N": f"{task.default_n} {task.selection}" + (" filtered" if task.row_filter is not None else ""),
                "source": task.source.describe(),
                "verifiable": task.verifier or "no",
                "stop (completion prompts)": ", ".join(repr(s) for s in task.stop) or "-",
                "max tokens": f"{task.max_new_tokens:,}",
            }
            for task in all_tasks()
        ]
    )
    caption = (
        "N: the first N rows, or the first N of lighteval's seeded shuffle (shuffled), after any filter. "
        "Stops apply to prompts without a chat template (stop policy auto; a study's `stops` changes it)."
    )
    print_frame(frame, output_format, lambda f: frame_table(f, "divtrace tasks", caption))


@tasks_app.command("show", cls=DivtraceCommand)
def show_task(
    name: Annotated[str, typer.Argument(help="task name or task .yaml file")],
    data_dir: Annotated[Path | None, typer.Option(help="directory with TASK.jsonl/.parquet for offline use")] = None,
    index: Annotated[
        int, typer.Option(min=0, help="which of the task's prompts to render (0: the first, in dataset order)")
    ] = 0,
) -> None:
    """Render one prompt of a task exactly as it is fed to a model without a chat template."""
    from divtrace.tasks import get_task, load_prompts

    task = get_task(name)
    items, origin = load_prompts(task, data_dir)
    if index >= len(items):
        raise DivtraceError(
            f"--index {index}: task {task.name} has only {len(items)} prompt(s) (0 to {len(items) - 1})"
        )
    item = items[index]
    say(f"task {task.name} ({task.family}), prompt {item.prompt_id} from {origin}")
    say(
        f"stop (completion prompts only under the default stop policy): {list(task.stop)}  "
        f"max new tokens: {task.max_new_tokens}  verifier: {task.verifier}"
    )
    say(
        f"prompts: {task.default_n}, {task.selection}"
        + (f"; filter: {task.filter_description}" if task.filter_description else "")
    )
    sys.stdout.write(item.prompt + ("" if item.prompt.endswith("\n") else "\n"))


@command("metrics")
def list_metrics(output_format: FormatOption = OutputFormat.table) -> None:
    """List the available diversity metrics."""
    from divtrace.score.metrics import metric_class, metric_names

    frame = pd.DataFrame(
        [
            {
                "name": name,
                "description": metric_class(name).description,
                "needs": "sentence embedder (--embedder)"
                if metric_class(name).uses_embeddings
                else metric_class(name).needs,
                "definition": metric_class(name).source,
            }
            for name in metric_names()
        ]
    )
    print_frame(frame, output_format, lambda f: frame_table(f, "divtrace metrics (higher = more diverse)"))
