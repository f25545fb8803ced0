"""Rich tables of the commands' results (score and verify summaries, the headline of a run)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # pandas is imported where it is used: the command line starts without it
    import pandas as pd


def verify_table(summary: pd.DataFrame) -> Table:
    """Correctness per checkpoint and task (``divtrace verify``'s summary)."""
    table = Table(title="correctness per checkpoint and task")
    for column in summary.columns:
        table.add_column(str(column), justify="left" if column in ("checkpoint", "task", "verifier") else "right")
    for row in summary.itertuples(index=False):
        table.add_row(*(_cell(column, v) for column, v in zip(summary.columns, row, strict=True)))
    caption_unclosed(table, summary)
    return table


def _cell(column: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return count_text(value) if column == "unclosed_thinking" else escape(str(value))


def score_table(summary: pd.DataFrame) -> Table:
    """Diversity per checkpoint, task and metric (``divtrace score``'s summary)."""
    table = Table(title="diversity per checkpoint and task (mean over prompts, 95% bootstrap CI)")
    columns = ("checkpoint", "task", "metric", "prompts", "mean", "95% CI", "std", "across-input", "unclosed_thinking",
               "indistinguishable_texts")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right" if column not in ("checkpoint", "task", "metric") else "left")
    for row in summary.itertuples(index=False):
        subset = getattr(row, "subset", "all")
        table.add_row(
            escape(str(row.checkpoint)),
            escape(str(row.task)),
            row.metric if subset == "all" else f"{row.metric} ({subset})",
            str(row.n_prompts),
            f"{row.mean:.4f}",
            f"[{row.ci_low:.4f}, {row.ci_high:.4f}]",
            f"{row.std:.4f}",
            f"{row.across_input:.4f}",
            count_text(getattr(row, "unclosed_thinking", None)),
            count_text(getattr(row, "indistinguishable_texts", None)),
        )
    caption_unclosed(table, summary)
    return table


def collapse_frame(sites_path: Path, retained_path: Path) -> pd.DataFrame:
    """Per lineage, task and metric: the leaf's retained diversity and the collapse site, as text.

    The collapse site is the stage with the largest significant loss (``collapse_sites.status`` is
    ``collapse site``); without one the site reads why (no significant loss, or diversity gained) and the change is
    ``-``. Changes are signed, negative = diversity lost.
    """
    import pandas as pd

    from divtrace.report.summary_md import NO_SITE_TEXT

    sites = pd.read_parquet(sites_path)
    retained = pd.read_parquet(retained_path)
    kept = retained.set_index(["checkpoint", "task", "metric"])
    rows = []
    for row in sites.sort_values(["lineage", "task", "metric"]).itertuples(index=False):
        key = (row.lineage, row.task, row.metric)
        if key in kept.index:
            leaf = kept.loc[key]
            kept_text = (
                f"{100 * leaf.retained:.1f} [{100 * leaf.retained_ci_low:.1f}, {100 * leaf.retained_ci_high:.1f}]"
            )
        else:
            kept_text = "-"
        status = str(getattr(row, "status", ""))
        is_site = isinstance(row.child, str) and status not in NO_SITE_TEXT
        rows.append(
            {
                "lineage": str(row.lineage),
                "task": str(row.task),
                "metric": str(row.metric),
                "retained % of base [95% CI]": kept_text,
                "collapse site": f"{row.parent} -> {row.child} ({row.stage})"
                if is_site
                else NO_SITE_TEXT.get(status, "-"),
                "change, % of base [95% CI]": (
                    f"{row.delta_pct_base:+.1f} [{row.delta_pct_base_ci_low:+.1f}, {row.delta_pct_base_ci_high:+.1f}]"
                    if is_site
                    else "-"
                ),
            }
        )
    return pd.DataFrame(rows)


#: What the collapse table's numbers mean (its caption).
COLLAPSE_CAPTION = (
    "change: % of the base's diversity, negative = diversity lost; collapse site: the stage with the largest loss "
    "whose 95% paired bootstrap CI excludes 0"
)


def collapse_table(frame: pd.DataFrame) -> Table:
    """The rich form of :func:`collapse_frame`, captioned with what its numbers mean (when it has rows)."""
    table = Table(*frame.columns, title="where diversity collapses (leaf of each lineage vs its base)")
    for row in frame.itertuples(index=False):
        table.add_row(*(escape(str(value)) for value in row))
    if len(frame):
        table.caption = COLLAPSE_CAPTION
        table.caption_justify = "left"
    return table


def known_count(value: Any) -> int | None:
    """A nullable count (None, NaN or pandas NA: unknown) as an int or None."""
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


def count_text(value: object) -> str:
    """A nullable count as text: ``-`` when unknown."""
    known = known_count(value)
    return "-" if known is None else str(known)


def caption_unclosed(table: Table, summary: pd.DataFrame) -> None:
    """A warning under ``table`` naming each (checkpoint, task) with outputs whose thinking never closed."""
    if "unclosed_thinking" not in summary.columns:
        return
    cells = summary.drop_duplicates(["checkpoint", "task"])
    counts = [(r.checkpoint, r.task, known_count(r.unclosed_thinking)) for r in cells.itertuples(index=False)]
    flagged = [(checkpoint, task, n) for checkpoint, task, n in counts if n]
    if flagged:
        table.caption = (
            "unclosed_thinking: outputs whose <think> block never closed (scored as they are, not emptied) in "
            + ", ".join(f"{c}/{t}: {n}" for c, t, n in flagged)
            + " (checkpoint/task). The token cap (max_new_tokens) may be too small there."
        )
        table.caption_justify = "left"


def quality_table(quality: pd.DataFrame) -> Table:
    """Quality per checkpoint, task and protocol (``divtrace judge``'s table)."""
    table = Table(title="quality per checkpoint and task by an LLM judge (mean over prompts, 95% bootstrap CI)")
    columns = ("checkpoint", "task", "protocol", "value", "95% CI", "prompts", "unparseable", "not sent", "baseline")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("checkpoint", "task", "protocol", "baseline") else "right"
        )
    for row in quality.itertuples(index=False):
        table.add_row(
            escape(str(row.checkpoint)),
            escape(str(row.task)),
            escape(f"{row.protocol} ({row.value_kind})"),
            f"{row.value:.4f}",
            f"[{row.ci_low:.4f}, {row.ci_high:.4f}]",
            str(row.n_prompts),
            str(row.n_unparseable),
            str(row.n_skipped),
            escape(str(row.baseline)),
        )
    return table
