"""The ``divtrace`` command line (typer)."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from divtrace.errors import DivtraceError

app = typer.Typer(
    name="divtrace",
    help="Find where a language model's output diversity collapses along its post-training lineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)


class OutputFormat(str, enum.Enum):
    """How ``divtrace score`` prints its summary."""

    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def score(
    inputs: Annotated[
        list[Path], typer.Argument(help="sample files or directories (JSONL, Parquet, lm-eval, lighteval)")
    ],
    metrics: Annotated[
        str | None,
        typer.Option(help="comma-separated metric names (default: ead,sbert,vendi, plus nli with --nli-model)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="directory for the Parquet/CSV tables and settings")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="how to print the summary")] = (
        OutputFormat.table
    ),
    embedder: Annotated[
        str | None,
        typer.Option(
            help="sentence-transformers id or path (default: packaged all-MiniLM-L6-v2; study: all-mpnet-base-v2)"
        ),
    ] = None,
    nli_model: Annotated[
        str | None, typer.Option(help="id or path of an MNLI classifier (study: roberta-large-mnli)")
    ] = None,
    vocab_size: Annotated[int | None, typer.Option(help="EAD vocabulary size V (default 50257)")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="take EAD's V from this tokenizer's size")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="checkpoint label for records without one")] = None,
    task: Annotated[str | None, typer.Option(help="task label for records without one")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="report and skip records that break the schema")] = False,
    no_cache: Annotated[bool, typer.Option(help="do not read or write the embedding cache")] = False,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap CIs")] = 1234,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples")] = 1000,
) -> None:
    """Score the diversity of K sampled outputs per prompt; print a summary per (checkpoint, task, metric)."""
    from divtrace.api import score as score_samples
    from divtrace.scoring.bootstrap import BootstrapSettings

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    try:
        with _progress() as progress:
            tasks: dict[str, int] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            result = score_samples(
                inputs,
                metrics=names,
                embedder=embedder,
                nli_model=nli_model,
                ead_vocab_size=vocab_size,
                ead_tokenizer=tokenizer,
                bootstrap=BootstrapSettings(resamples=resamples, seed=seed),
                use_cache=not no_cache,
                skip_invalid=skip_invalid,
                checkpoint=checkpoint,
                task=task,
                out=out,
                progress=report,
            )
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err

    for problem in result.settings.get("skipped_records", []):
        stderr.print(f"[yellow]skipped:[/] {problem}")
    summary = result.summary
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps(json.loads(summary.to_json(orient="records")), indent=2) + "\n")
    elif output_format is OutputFormat.csv:
        sys.stdout.write(summary.to_csv(index=False))
    else:
        Console().print(_summary_table(summary))
    if out is not None:
        stderr.print(f"tables written to {out}")


@app.command("metrics")
def list_metrics() -> None:
    """List the available diversity metrics."""
    from divtrace.metrics import metric_class, metric_names

    table = Table("name", "description", "needs", title="divtrace metrics (higher = more diverse)")
    for name in metric_names():
        cls = metric_class(name)
        table.add_row(name, cls.description, "sentence embedder (--embedder)" if cls.uses_embeddings else cls.needs)
    Console().print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def _summary_table(summary) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title="diversity per checkpoint and task (mean over prompts, 95% bootstrap CI)")
    for column in ("checkpoint", "task", "metric", "prompts", "mean", "95% CI", "std", "across-input"):
        table.add_column(column, justify="right" if column not in ("checkpoint", "task", "metric") else "left")
    for row in summary.itertuples(index=False):
        table.add_row(
            row.checkpoint,
            row.task,
            row.metric,
            str(row.n_prompts),
            f"{row.mean:.4f}",
            f"[{row.ci_low:.4f}, {row.ci_high:.4f}]",
            f"{row.std:.4f}",
            f"{row.across_input:.4f}",
        )
    return table


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
