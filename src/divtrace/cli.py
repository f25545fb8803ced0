"""The ``divtrace`` command line (typer)."""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from divtrace.errors import DivtraceError
from divtrace.generate.stops import StopPolicy

if TYPE_CHECKING:
    from divtrace.runs.stages import RunProgress, StageReport

app = typer.Typer(
    name="divtrace",
    help="Find where a language model's output diversity collapses along its post-training lineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)


#: ``--strip-thinking/--no-strip-thinking`` of the commands that read samples (score, verify, analyze).
StripThinkingOption = Annotated[
    bool,
    typer.Option(
        "--strip-thinking/--no-strip-thinking",
        help="remove <think>...</think> chain-of-thought from the outputs before verifying and scoring, as the "
        "study did, and count outputs whose thinking never closed (off: the samples as stored)",
    ),
]


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
    code_embedder: Annotated[
        str | None, typer.Option(help="encoder of code-sbert/code-vendi (study: microsoft/unixcoder-base)")
    ] = None,
    verdicts: Annotated[
        Path | None,
        typer.Option(help="verdicts.parquet of divtrace verify: adds the correct subset and the answer metrics"),
    ] = None,
    across_input_prompts: Annotated[
        int, typer.Option(help="across-input: first outputs of at most this many prompts (sampled with --seed)")
    ] = 500,
    vocab_size: Annotated[int | None, typer.Option(help="EAD vocabulary size V (default 50257)")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="take EAD's V from this tokenizer's size")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="checkpoint label for records without one")] = None,
    task: Annotated[str | None, typer.Option(help="task label for records without one")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="report and skip records that break the schema")] = False,
    no_cache: Annotated[bool, typer.Option(help="do not read or write the embedding cache")] = False,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap CIs and of the across-input sample")] = 1234,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples")] = 1000,
    strip_thinking: StripThinkingOption = True,
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

            verdict_table = None
            if verdicts is not None:
                import pandas as pd

                if not verdicts.is_file():
                    raise DivtraceError(f"{verdicts}: no such verdicts file (divtrace verify writes verdicts.parquet)")
                verdict_table = pd.read_parquet(verdicts)
            result = score_samples(
                inputs,
                metrics=names,
                embedder=embedder,
                code_embedder=code_embedder,
                nli_model=nli_model,
                verdicts=verdict_table,
                across_input_prompts=across_input_prompts,
                across_input_seed=seed,
                ead_vocab_size=vocab_size,
                ead_tokenizer=tokenizer,
                bootstrap=BootstrapSettings(resamples=resamples, seed=seed),
                use_cache=not no_cache,
                skip_invalid=skip_invalid,
                checkpoint=checkpoint,
                task=task,
                out=out,
                progress=report,
                strip_thinking=strip_thinking,
            )
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err

    for problem in result.settings.get("skipped_records", []):
        stderr.print(f"[yellow]skipped:[/] {problem}")
    if result.settings.get("unencodable_texts"):
        stderr.print(
            f"[yellow]note:[/] {result.settings['unencodable_texts']} text(s) held lone surrogates (not encodable); "
            "they were scored with U+FFFD in their place"
        )
    _print_summary(result.summary, output_format, _summary_table)
    if out is not None:
        stderr.print(f"tables written to {out}")


class ExecutorOption(str, enum.Enum):
    """``--executor``: this process, or a Ray cluster."""

    local = "local"
    ray = "ray"


class ThinkingOption(str, enum.Enum):
    """``--thinking``: leave chain-of-thought to the model, or suppress it with an empty pre-filled block."""

    native = "native"
    suppressed = "suppressed"


@app.command()
def generate(
    model: Annotated[str, typer.Option(help="quickstart:NAME, hub id, local dir, .gguf file, or served model name")],
    out: Annotated[Path, typer.Option(help="run directory; samples go to OUT/samples/CHECKPOINT/TASK/")],
    revision: Annotated[str | None, typer.Option(help="hub revision (branch, tag or commit) of --model")] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="prompts file: JSONL with 'prompt' (and 'prompt_id'), or one per line")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="a task (divtrace tasks) or task .yaml file: its prompts, stops and length")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="directory with task data (TASK.jsonl/.parquet) for offline use")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="samples per prompt")] = 16,
    n: Annotated[int | None, typer.Option("-n", help="use only the first N prompts")] = None,
    temperature: Annotated[float, typer.Option(help="sampling temperature (> 0)")] = 0.6,
    top_p: Annotated[float, typer.Option(help="nucleus sampling mass")] = 0.95,
    top_k: Annotated[int | None, typer.Option(help="top-k filtering (default: off)")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="tokens per sample at most (default: the task's, or 512 with --prompts)")
    ] = (None),
    stop: Annotated[list[str] | None, typer.Option(help="stop string, repeatable (default: the task's)")] = None,
    stops: Annotated[
        StopPolicy,
        typer.Option(
            help="where stop strings apply: auto (completion prompts only, not chat templates), always, never"
        ),
    ] = StopPolicy.auto,
    seed: Annotated[int, typer.Option(help="base seed; each sample's seed derives from it")] = 1234,
    thinking: Annotated[ThinkingOption, typer.Option(help="chain-of-thought: native or suppressed")] = (
        ThinkingOption.native
    ),
    system_prompt: Annotated[str | None, typer.Option(help="system message (chat template) or preamble")] = None,
    chat_template: Annotated[
        bool | None, typer.Option("--chat-template/--no-chat-template", help="default: on when the model has one")
    ] = None,
    backend: Annotated[str, typer.Option(help="transformers, vllm or openai")] = "transformers",
    checkpoint: Annotated[str | None, typer.Option(help="checkpoint label (default: from the model ref)")] = None,
    task_label: Annotated[str | None, typer.Option("--task-label", help="task label (default: prompts file stem)")] = (
        None
    ),
    shard_size: Annotated[int, typer.Option(help="prompts per stored shard (the unit of resumption)")] = 8,
    device: Annotated[str | None, typer.Option(help="transformers/vllm: device (default cuda if available)")] = None,
    dtype: Annotated[str | None, typer.Option(help="transformers/vllm: float32, bfloat16, float16")] = None,
    batch_size: Annotated[int, typer.Option(help="transformers: samples per forward batch")] = 32,
    threads: Annotated[int | None, typer.Option(help="transformers: torch CPU threads")] = None,
    tensor_parallel_size: Annotated[int, typer.Option(help="vllm: GPUs per model")] = 1,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option(help="vllm: share of GPU memory the engine may take (default: vLLM's)")
    ] = None,
    kv_cache_gib: Annotated[
        float | None, typer.Option(help="vllm: KV-cache size in GiB (CPU default 2; GPU: from the memory share)")
    ] = None,
    enforce_eager: Annotated[
        bool, typer.Option(help="vllm: no compilation/CUDA graphs (faster start; recorded, samples may differ)")
    ] = False,
    max_model_len: Annotated[int | None, typer.Option(help="vllm: context length cap (default: the model's)")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: server URL, e.g. http://127.0.0.1:8000/v1")] = None,
    endpoint: Annotated[str, typer.Option(help="openai: completions or chat")] = "completions",
    max_concurrency: Annotated[int, typer.Option(help="openai: requests in flight at most")] = 16,
    max_retries: Annotated[int, typer.Option(help="openai: retries (with backoff) on 429/5xx/connection errors")] = 5,
    n_mode: Annotated[
        str,
        typer.Option(help="openai: separate (a request and seed per sample), auto (n=K where honoured) or native"),
    ] = "separate",
    tokenizer: Annotated[
        str | None, typer.Option(help="openai completions: tokenizer id/path to render the chat template locally")
    ] = None,
    extra_sampling_params: Annotated[
        bool, typer.Option(help="openai: send top_k etc. in extra_body (vLLM/SGLang servers)")
    ] = False,
) -> None:
    """Sample K outputs per prompt from one checkpoint; resumable (finished shards are never redone)."""
    from divtrace.generate.backends import create_generator
    from divtrace.generate.params import SamplingParams
    from divtrace.generate.prompts import read_prompts
    from divtrace.generate.runner import RenderOptions, generate_samples
    from divtrace.generate.store import safe_name
    from divtrace.generate.thinking import ThinkingMode

    try:
        if (prompts is None) == (task is None):
            raise DivtraceError("give the prompts with exactly one of --prompts FILE and --task NAME")
        task_stop: tuple[str, ...] = ()
        task_max_new_tokens = 512
        if task is not None:
            from divtrace.tasks import get_task, load_prompts

            chosen = get_task(task)
            items, origin = load_prompts(chosen, data_dir, n)
            stderr.print(f"task {chosen.name}: {origin}")
            task_stop, task_max_new_tokens, default_label = chosen.stop, chosen.max_new_tokens, chosen.name
        else:
            assert prompts is not None
            items = read_prompts(prompts)[:n] if n is not None else read_prompts(prompts)
            default_label = prompts.stem
        params = SamplingParams(
            k=k,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=max_new_tokens if max_new_tokens is not None else task_max_new_tokens,
            stop=tuple(stop) if stop is not None else task_stop,
            seed=seed,
        )
        options: dict[str, object] = {}
        if backend == "transformers":
            options = {
                "revision": revision,
                "device": device,
                "dtype": dtype,
                "batch_size": batch_size,
                "threads": threads,
            }
        elif backend == "vllm":
            options = {
                "revision": revision,
                "dtype": dtype,
                "tensor_parallel_size": tensor_parallel_size,
                "gpu_memory_utilization": gpu_memory_utilization,
                "kv_cache_gib": kv_cache_gib,
                "enforce_eager": enforce_eager,
                "max_model_len": max_model_len,
                "device": device or "auto",
            }
        elif backend == "openai":
            if base_url is None:
                raise DivtraceError("the openai backend needs --base-url")
            options = {
                "base_url": base_url,
                "endpoint": endpoint,
                "max_concurrency": max_concurrency,
                "max_retries": max_retries,
                "n_mode": n_mode,
                "tokenizer": tokenizer,
                "extra_sampling_params": extra_sampling_params,
            }
        with stderr.status(f"loading {model} ({backend})"):
            generator = create_generator(backend, model, **options)
        label = checkpoint or safe_name(model.removeprefix("quickstart:"))
        task_name = task_label or default_label
        with _sample_progress() as progress:
            bar = progress.add_task(f"{label} / {task_name}", total=None)

            def report(event: str, value: int) -> None:
                if event == "total":
                    progress.update(bar, total=value)
                elif event == "skipped":
                    progress.update(bar, total=(progress.tasks[bar].total or 0) - value)
                else:
                    progress.advance(bar, value)

            summary = generate_samples(
                generator,
                items,
                params,
                out_dir=out,
                checkpoint=label,
                task=task_name,
                render=RenderOptions(system_prompt, chat_template, ThinkingMode(thinking.value), stops),
                shard_size=shard_size,
                progress=report,
            )
        generator.close()
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    except ValueError as err:  # pydantic validation of the sampling options
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    stderr.print(
        f"{summary.samples_written} samples written in {summary.written_shards} shard(s); "
        f"{summary.skipped_shards} of {summary.shards} shard(s) were already done -> {out}"
    )


class _SamplesPerSecond(ProgressColumn):
    """Rich progress column: samples drawn per second (rich's own speed estimate of the task)."""

    def render(self, task: Task) -> Text:
        return Text(
            "-- samples/s" if task.speed is None else f"{task.speed:.2f} samples/s", style="progress.data.speed"
        )


def _sample_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _SamplesPerSecond(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
    )


@app.command()
def verify(
    inputs: Annotated[list[Path], typer.Argument(help="sample files or directories (JSONL, Parquet, lm-eval...)")],
    out: Annotated[Path | None, typer.Option(help="directory for verdicts.parquet and verify_summary.*")] = None,
    task: Annotated[str | None, typer.Option(help="task name or task .yaml for every record (default: its own)")] = (
        None
    ),
    data_dir: Annotated[
        Path | None, typer.Option(help="task data for records without references (imported samples)")
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="how to print the summary")] = (
        OutputFormat.table
    ),
    skip_invalid: Annotated[bool, typer.Option(help="report and skip records that break the schema")] = False,
    strip_thinking: StripThinkingOption = True,
) -> None:
    """Check each sample against its task's reference: a verdict per sample; accuracy, pass@k, majority vote."""
    from divtrace.samples import read_samples
    from divtrace.tasks.verify import verify_records, write_verify_result

    try:
        read = read_samples(inputs, skip_invalid=skip_invalid, strip_thinking=strip_thinking)
        for problem in read.problems:
            stderr.print(f"[yellow]skipped:[/] {problem}")
        with _progress() as progress:
            bars: dict[str, int] = {}

            def report(name: str, done: int, total: int) -> None:
                if name not in bars:
                    bars[name] = progress.add_task(f"verify {name}", total=total)
                progress.update(bars[name], completed=done, total=total)

            result = verify_records(
                read.records, task=task, data_dir=data_dir, progress=report, strip_thinking=strip_thinking
            )
        result.settings["strip_thinking"] = strip_thinking
        if out is not None:
            write_verify_result(result, out)
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    for line in result.skipped:
        stderr.print(f"[yellow]not verifiable:[/] {line}")
    _print_summary(result.summary, output_format, _verify_table)
    if out is not None:
        stderr.print(f"verdicts written to {out}")


@app.command()
def run(
    study: Annotated[str | None, typer.Argument(help="study .yaml file or preset (default: quickstart)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default: runs/STUDY-NAME)")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the plan (shards, samples, tokens, time) and stop")] = False,
    executor: Annotated[
        ExecutorOption | None, typer.Option(help="where the work runs (default: the study's executor)")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="ray: the cluster address (HOST:PORT or 'auto'; default: the study's)")
    ] = None,
) -> None:
    """Run a study end to end: plan, generate, verify, score, analyze, report; resumable, skipping done work."""
    from divtrace.executors.local import run_study
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.plan import ASSUMED_TOKENS_PER_S, estimate_seconds, plan_study, plan_without_data
    from divtrace.runs.stages import plan_tasks
    from divtrace.study import load_study

    try:
        chosen = load_study(study or "quickstart")
        use_ray = (executor.value if executor is not None else chosen.executor.type) == "ray"
        directory = out or Path("runs") / chosen.name
        try:
            with stderr.status("loading task data"):
                tasks = plan_tasks(chosen)
            rows = plan_study(chosen, RunLayout(directory), tasks)
        except DivtraceError as err:
            if not dry_run:
                raise
            stderr.print(f"[yellow]note:[/] task data is not available here, so the plan uses each task's N: {err}")
            rows = plan_without_data(chosen)
        table = Table("checkpoint", "task", "backend", "prompts", "K", "samples", "shards", "max tokens", "status",
                      title=f"plan of study {chosen.name} -> {directory}")  # fmt: skip
        for row in rows:
            table.add_row(row.checkpoint, row.task, row.backend, str(row.prompts), str(row.k), str(row.samples),
                          str(row.shards), f"{row.max_tokens:,}", "done" if row.done else "to do")  # fmt: skip
        todo = [row for row in rows if not row.done]
        seconds = estimate_seconds(rows)
        (Console() if dry_run else stderr).print(table)
        (Console() if dry_run else stderr).print(
            f"{sum(r.samples for r in todo):,} samples to generate, at most {sum(r.max_tokens for r in todo):,} "
            f"tokens; estimate ~{_duration(seconds)} at "
            + ", ".join(f"{b} {ASSUMED_TOKENS_PER_S[b]:,.0f} tok/s" for b in sorted({r.backend for r in todo}))
            + (" (nothing to generate)" if not todo else "")
        )
        vllm_tokens = sum(row.max_tokens for row in todo if row.backend == "vllm")
        if vllm_tokens:
            (Console() if dry_run else stderr).print(
                f"vLLM rows: ~{vllm_tokens / ASSUMED_TOKENS_PER_S['vllm'] / 3600:,.0f} GPU-hours at one GPU per model "
                f"and an ASSUMED {ASSUMED_TOKENS_PER_S['vllm']:,.0f} tok/s, if every sample ran to its task's cap "
                "(the max tokens column; most outputs end sooner, at a stop or end of sequence)"
            )
        if chosen.caveat:
            stderr.print(f"[bold yellow]caveat:[/] {chosen.caveat}")
        if dry_run:
            return
        with _stage_progress() as progress:
            if use_ray:
                from divtrace.executors.ray_executor import run_study_ray

                reports = run_study_ray(
                    chosen,
                    directory,
                    address=address,
                    tasks=tasks,
                    progress=progress,
                    on_stage=lambda name: stderr.log(f"stage {name} (ray)"),
                )
            else:
                reports = run_study(
                    chosen, directory, tasks=tasks, progress=progress, on_stage=lambda name: stderr.log(f"stage {name}")
                )
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    _print_outcome(reports, directory)


@contextlib.contextmanager
def _stage_progress() -> Iterator[RunProgress]:
    """A progress display for the stages of a run; yields the :data:`RunProgress` callback that drives it.

    The libraries' own bars (transformers' "Loading weights", tqdm in the GGUF conversion) would tear it, so
    they are turned off.
    """
    import os

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm when a bar is created
    with _sample_progress() as progress:
        bars: dict[str, int] = {}

        def report(stage: str, description: str, done: int, total: int) -> None:
            label = f"{stage}: {description}"
            if label not in bars:
                bars[label] = progress.add_task(label, total=total or None)
            progress.update(bars[label], completed=done, total=total or None)

        yield report


def _run_stages(stages: list[tuple[str, Callable[[RunProgress], StageReport]]]) -> list[StageReport]:
    """Run ``stages`` in order under one progress display; what each did."""
    reports = []
    with _stage_progress() as progress:
        for name, stage in stages:
            stderr.log(f"stage {name}")
            reports.append(stage(progress))
    return reports


def _print_outcome(reports: list[StageReport], directory: Path) -> None:
    """What each stage did, the headline table (retained diversity and collapse sites), and where the report is."""
    for stage_report in reports:
        stderr.print(f"{stage_report.stage}: ran {len(stage_report.ran)}, already done {len(stage_report.skipped)}")
    headline = directory / "analysis" / "collapse_sites.parquet"
    retained = directory / "analysis" / "retained.parquet"
    if headline.exists() and retained.exists():
        Console().print(_collapse_table(headline, retained))
    report_dir = directory / "report"
    if (report_dir / "index.html").exists():
        stderr.print(f"report: {report_dir / 'index.html'}  summary: {report_dir / 'summary.md'}")


def _collapse_table(sites_path: Path, retained_path: Path) -> Table:
    """Per lineage, task and metric: the leaf's retained diversity and the stage that lost the most."""
    import pandas as pd

    sites = pd.read_parquet(sites_path)
    retained = pd.read_parquet(retained_path)
    table = Table(
        "lineage", "task", "metric", "retained % of base [95% CI]", "collapse site", "change, % of base [95% CI]",
        title="where diversity collapses (leaf of each lineage vs its base)",
    )  # fmt: skip
    kept = retained.set_index(["checkpoint", "task", "metric"])
    for row in sites.sort_values(["lineage", "task", "metric"]).itertuples(index=False):
        key = (row.lineage, row.task, row.metric)
        if key in kept.index:
            leaf = kept.loc[key]
            kept_text = (
                f"{100 * leaf.retained:.1f} [{100 * leaf.retained_ci_low:.1f}, {100 * leaf.retained_ci_high:.1f}]"
            )
        else:
            kept_text = "-"
        site = f"{row.parent} -> {row.child} ({row.stage})" if isinstance(row.child, str) else "-"
        change = (
            f"{row.delta_pct_base:+.1f} [{row.delta_pct_base_ci_low:+.1f}, {row.delta_pct_base_ci_high:+.1f}]"
            + (" *" if row.significant else "")
            if row.delta_pct_base == row.delta_pct_base
            else "-"
        )
        table.add_row(str(row.lineage), str(row.task), str(row.metric), kept_text, site, change)
    table.caption = "* the 95% paired bootstrap CI excludes 0"
    return table


@app.command()
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
    task: Annotated[str | None, typer.Option(help="task label for records without one")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="task data, for verifying records without references")] = (None),
    verify: Annotated[bool, typer.Option(help="verify verifiable tasks (needed for the decomposition)")] = True,
    report: Annotated[bool, typer.Option(help="also write report/index.html and summary.md")] = True,
    skip_invalid: Annotated[bool, typer.Option(help="report and skip records that break the schema")] = False,
    strip_thinking: StripThinkingOption = True,
) -> None:
    """Analyze samples generated elsewhere along a lineage: verify, score, analyze (and report), resumably."""
    from divtrace.runs.imported import (
        IMPORTED_MODEL,
        SampleSource,
        import_samples,
        imported_study,
        parse_lineage,
        read_sources,
        run_tasks,
    )
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.stages import stage_analyze, stage_report, stage_score, stage_verify
    from divtrace.study import load_study

    try:
        if study is not None and lineage:
            raise DivtraceError("give the lineage either with --study or with --lineage, not both")
        base_study = load_study(str(study)) if study is not None else None
        checkpoints = base_study.checkpoints if base_study is not None else parse_lineage(lineage or [], variant or [])
        names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
        if names is None and base_study is not None:
            names = base_study.metrics
        if nli_model and names is not None and "nli" not in names:
            names = [*names, "nli"]
        elif nli_model and names is None:
            names = ["ead", "sbert", "vendi", "nli"]
        sources = [SampleSource.parse(text) for text in inputs]
        with stderr.status("reading samples"):
            records, problems = read_sources(sources, skip_invalid=skip_invalid, strip_thinking=strip_thinking)
        if task is not None:
            records = [r if r.task and r.task != "default" else r.model_copy(update={"task": task}) for r in records]
        for problem in problems:
            stderr.print(f"[yellow]skipped:[/] {problem}")
        chosen = imported_study(
            [c.model_copy(update={"model": IMPORTED_MODEL}) if base_study is not None else c for c in checkpoints],
            records,
            metrics=names,
            embedder=embedder or (base_study.embedder if base_study else None),
            nli_model=nli_model or (base_study.nli_model if base_study else None),
            data_dir=str(data_dir) if data_dir else None,
        )
        layout = RunLayout(out)
        imported = import_samples(chosen, records, layout, strip_thinking=strip_thinking)
        stderr.print(
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
        reports = _run_stages(stages)
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    _print_outcome(reports, out)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of divtrace run or divtrace analyze")],
) -> None:
    """(Re)write RUN/report/index.html and summary.md from the run directory's stored analysis."""
    from divtrace.runs.imported import run_tasks
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.stages import stage_report
    from divtrace.study import IMPORTED_MODEL, load_study

    layout = RunLayout(run_dir)
    try:
        if not layout.study_file.exists():
            raise DivtraceError(
                f"{layout.study_file}: not found; is {run_dir} a run directory of divtrace run/analyze?"
            )
        chosen = load_study(str(layout.study_file))
        imported = all(c.model == IMPORTED_MODEL for c in chosen.checkpoints)
        tasks = run_tasks(chosen, "imported" if imported else "generated by divtrace run")
        reports = _run_stages([("report", lambda p: stage_report(chosen, layout, tasks))])
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    _print_outcome(reports, run_dir)


@app.command()
def lineages() -> None:
    """Show the built-in study presets and their checkpoint graphs."""
    from divtrace.study import PRESETS

    for name, make in PRESETS.items():
        study = make()
        graph = study.graph()
        table = Table("checkpoint", "model", "stage", "parent / variant of", "thinking", "backend",
                      title=f"{name}: {study.description}")  # fmt: skip
        for checkpoint in study.checkpoints:
            relation = checkpoint.parent or (f"variant of {checkpoint.variant_of}" if checkpoint.variant_of else "-")
            table.add_row(checkpoint.name, checkpoint.model, checkpoint.stage, relation, checkpoint.thinking,
                          checkpoint.backend)  # fmt: skip
        Console().print(table)
        for leaf, path in graph.lineages().items():
            Console().print(f"  lineage {leaf}: {' -> '.join(path)}")
        if study.caveat:
            Console().print(f"  [yellow]caveat:[/] {study.caveat}")


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the starter study")] = Path("study.yaml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter study file."""
    from divtrace.study import STARTER_STUDY

    if path.exists() and not force:
        stderr.print(f"[bold red]error:[/] {path} exists (use --force to overwrite)")
        raise typer.Exit(code=2)
    path.write_text(STARTER_STUDY)
    stderr.print(f"wrote {path}; edit it, then: divtrace run {path} --dry-run")


tasks_app = typer.Typer(help="The task suite: list tasks, show a rendered prompt.", no_args_is_help=False)
app.add_typer(tasks_app, name="tasks")


@tasks_app.callback(invoke_without_command=True)
def list_tasks(context: typer.Context) -> None:
    """List the tasks: family, N and how they are chosen, data source, verifier, stops and token cap."""
    if context.invoked_subcommand is not None:
        return
    from divtrace.tasks import all_tasks

    table = Table(
        "task", "family", "N", "source", "verifiable", "stop (completion prompts)", "max tokens",
        title="divtrace tasks",
        caption="N: the first N rows, or the first N of lighteval's seeded shuffle (shuffled), after any filter. "
        "Stops apply to prompts without a chat template (stop policy auto; a study's `stops` changes it).",
    )  # fmt: skip
    for task in all_tasks():
        chosen = f"{task.default_n} {task.selection}" + (" filtered" if task.row_filter is not None else "")
        table.add_row(
            task.name,
            task.family,
            chosen,
            task.source.describe(),
            task.verifier or "no",
            ", ".join(repr(s) for s in task.stop) or "-",
            f"{task.max_new_tokens:,}",
        )
    Console().print(table)


@tasks_app.command("show")
def show_task(
    name: Annotated[str, typer.Argument(help="task name or task .yaml file")],
    data_dir: Annotated[Path | None, typer.Option(help="directory with TASK.jsonl/.parquet for offline use")] = None,
    index: Annotated[
        int, typer.Option(help="which of the task's prompts to render (0: the first, in dataset order)")
    ] = 0,
) -> None:
    """Render one prompt of a task exactly as it is fed to a model without a chat template."""
    from divtrace.tasks import get_task, load_prompts

    try:
        task = get_task(name)
        items, origin = load_prompts(task, data_dir)
    except DivtraceError as err:
        stderr.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    if index >= len(items):
        stderr.print(f"[bold red]error:[/] task {task.name} has only {len(items)} prompt(s)")
        raise typer.Exit(code=2)
    item = items[index]
    stderr.print(f"task {task.name} ({task.family}), prompt {item.prompt_id} from {origin}")
    stderr.print(
        f"stop (completion prompts only under the default stop policy): {list(task.stop)}  "
        f"max new tokens: {task.max_new_tokens}  verifier: {task.verifier}"
    )
    stderr.print(
        f"prompts: {task.default_n}, {task.selection}"
        + (f"; filter: {task.filter_description}" if task.filter_description else "")
    )
    sys.stdout.write(item.prompt + ("" if item.prompt.endswith("\n") else "\n"))


@app.command("metrics")
def list_metrics() -> None:
    """List the available diversity metrics."""
    from divtrace.metrics import metric_class, metric_names

    table = Table("name", "description", "needs", title="divtrace metrics (higher = more diverse)")
    for name in metric_names():
        cls = metric_class(name)
        table.add_row(name, cls.description, "sentence embedder (--embedder)" if cls.uses_embeddings else cls.needs)
    Console().print(table)


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``131.1 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def _print_summary(summary, output_format: OutputFormat, as_table: Callable[..., Table]) -> None:  # type: ignore[no-untyped-def]
    """A summary DataFrame on stdout: JSON records, CSV, or the rich table ``as_table`` makes of it."""
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps(json.loads(summary.to_json(orient="records")), indent=2) + "\n")
    elif output_format is OutputFormat.csv:
        sys.stdout.write(summary.to_csv(index=False))
    else:
        Console().print(as_table(summary))


def _verify_table(summary) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title="correctness per checkpoint and task")
    for column in summary.columns:
        table.add_column(str(column), justify="left" if column in ("checkpoint", "task", "verifier") else "right")
    for row in summary.itertuples(index=False):
        table.add_row(
            *(
                f"{v:.4f}" if isinstance(v, float) else _count(v) if column == "unclosed_thinking" else str(v)
                for column, v in zip(summary.columns, row, strict=True)
            )
        )
    _caption_unclosed(table, summary)
    return table


def _summary_table(summary) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title="diversity per checkpoint and task (mean over prompts, 95% bootstrap CI)")
    columns = ("checkpoint", "task", "metric", "prompts", "mean", "95% CI", "std", "across-input", "unclosed_thinking")
    for column in columns:
        table.add_column(column, justify="right" if column not in ("checkpoint", "task", "metric") else "left")
    for row in summary.itertuples(index=False):
        subset = getattr(row, "subset", "all")
        table.add_row(
            row.checkpoint,
            row.task,
            row.metric if subset == "all" else f"{row.metric} ({subset})",
            str(row.n_prompts),
            f"{row.mean:.4f}",
            f"[{row.ci_low:.4f}, {row.ci_high:.4f}]",
            f"{row.std:.4f}",
            f"{row.across_input:.4f}",
            _count(getattr(row, "unclosed_thinking", None)),
        )
    _caption_unclosed(table, summary)
    return table


def _known_count(value: object) -> int | None:
    """A nullable count (None, NaN or pandas NA: unknown) as an int or None."""
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)  # type: ignore[arg-type]


def _count(value: object) -> str:
    """A nullable count as text: ``-`` when unknown."""
    known = _known_count(value)
    return "-" if known is None else str(known)


def _caption_unclosed(table: Table, summary) -> None:  # type: ignore[no-untyped-def]
    """A warning under ``table`` naming each (checkpoint, task) with outputs whose thinking never closed."""
    if "unclosed_thinking" not in summary.columns:
        return
    cells = summary.drop_duplicates(["checkpoint", "task"])
    counts = [(r.checkpoint, r.task, _known_count(r.unclosed_thinking)) for r in cells.itertuples(index=False)]
    flagged = [(checkpoint, task, n) for checkpoint, task, n in counts if n]
    if flagged:
        table.caption = (
            "unclosed_thinking: outputs whose <think> block never closed (scored as they are, not emptied) in "
            + ", ".join(f"{c}/{t}: {n}" for c, t, n in flagged)
            + " (checkpoint/task). The token cap (max_new_tokens) may be too small there."
        )
        table.caption_justify = "left"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
