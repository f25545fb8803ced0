"""``divtrace score``: diversity of K outputs per prompt, from sample files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    StrictKOption,
    StripThinkingOption,
    flag,
)
from divtrace.cli.progress import progress_display
from divtrace.cli.tables import score_table
from divtrace.errors import DivtraceError
from divtrace.progress import scoped


@command()
def score(
    inputs: Annotated[
        list[Path], typer.Argument(help="sample files or directories (JSONL, Parquet, lm-eval, lighteval)")
    ],
    metrics: Annotated[
        str | None,
        typer.Option(help="comma-separated metric names (default: ead,sbert,vendi, plus nli with --nli-model)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="directory for the Parquet/CSV tables and settings")] = None,
    output_format: FormatOption = OutputFormat.table,
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
        int,
        typer.Option(min=1, help="across-input: first outputs of at most this many prompts (sampled with --seed)"),
    ] = 500,
    vocab_size: Annotated[
        int | None, typer.Option(min=2, help="EAD vocabulary size V (default 50257 for every checkpoint, the study's)")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="take EAD's V from this Hugging Face tokenizer's vocabulary size")
    ] = None,
    checkpoint: RecordCheckpointOption = None,
    task: RecordTaskOption = None,
    skip_invalid: SkipInvalidOption = False,
    input_format: InputFormatOption = InputFormat.auto,
    cache: Annotated[
        bool, flag("read and write the embedding cache (off: compute every embedding)", "--cache/--no-cache")
    ] = True,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap CIs and of the across-input sample")] = 1234,
    resamples: Annotated[int, typer.Option(min=1, help="bootstrap resamples")] = 1000,
    strip_thinking: StripThinkingOption = True,
    strict_k: StrictKOption = False,
) -> None:
    """Score the diversity of K sampled outputs per prompt; print a summary per (checkpoint, task, metric)."""
    from divtrace.api import score as score_samples
    from divtrace.stats.bootstrap import BootstrapSettings

    checks.existing_inputs(inputs)
    names = checks.metric_list(metrics)
    if out is not None:
        checks.writable_directory(out)
    verdict_table = None
    if verdicts is not None:
        import pandas as pd

        if not verdicts.is_file():
            raise DivtraceError(f"--verdicts {verdicts}: no such file (divtrace verify writes verdicts.parquet)")
        verdict_table = pd.read_parquet(verdicts)
    with progress_display(transient=True) as display:
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
            use_cache=cache,
            skip_invalid=skip_invalid,
            input_format=input_format.value,
            checkpoint=checkpoint,
            task=task,
            out=out,
            progress=scoped(display, stage="score"),
            strip_thinking=strip_thinking,
            strict_k=strict_k,
            on_warning=lambda message: note(message, "warning"),
        )
    for problem in result.settings.get("skipped_records", []):
        note(problem, "skipped")
    if result.settings.get("unencodable_texts"):
        note(
            f"{result.settings['unencodable_texts']} text(s) held lone surrogates (not encodable); "
            "they were scored with U+FFFD in their place"
        )
    _warn_indistinguishable(result.settings.get("indistinguishable_texts"))
    print_frame(result.summary, output_format, score_table)
    if out is not None:
        say(f"tables written to {out}")


def _warn_indistinguishable(found: dict[str, Any] | None) -> None:
    """A warning when the embedder mapped different outputs of a prompt to the same vector (their sbert/vendi
    diversity is understated), with a few examples."""
    if not found or not found.get("count"):
        return
    note(
        f"{found['count']} output(s) in {found['prompts']} prompt(s) look identical to the embedder "
        f"{found.get('embedder')} although their text differs (e.g. emoji-only outputs, which it maps to unknown "
        "tokens): their sbert/vendi diversity is understated; the indistinguishable_texts column counts them",
        "warning",
    )
    for example in found.get("examples", [])[:3]:
        texts = ", ".join(repr(text) for text in example.get("texts", [])[:4])
        note(f"{example.get('checkpoint')}/{example.get('task')} prompt {example.get('prompt_id')}: {texts}", "e.g.")
