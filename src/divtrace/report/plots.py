"""The report's figures: one small function per figure, each returning an inline SVG string.

Every function takes the report's canonical tables (column names as documented on
:func:`divtrace.report.html.report_tables`) and returns an ``<svg>`` element (no XML prolog), ready to be
inlined in HTML: text stays text (``svg.fonttype = none``), element ids are prefixed so that many figures can
share one page. Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend state). Nothing here reads files or the network.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import offset_copy

from divtrace.report.numbers import missing
from divtrace.study.lineage import LineageGraph
from divtrace.study.sweep import format_value

#: Colour map of retained diversity (red: collapsed, green: kept).
RETAINED_CMAP = "RdYlGn"
_SVG_RC = {
    "svg.fonttype": "none",
    "svg.image_inline": True,
    "svg.hashsalt": "divtrace",
    "font.size": 9,
    "axes.titlesize": 10,
}
_figure_ids = itertools.count(1)


def svg_of(fig: Figure) -> str:
    """``fig`` as an inline ``<svg>`` element with ids made unique to this figure."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_SVG_RC):
        # No timestamp: the same data gives the same bytes (the report of a rerun is byte-identical).
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    prefix = f"f{next(_figure_ids)}-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return text


def checkpoint_colours(checkpoints: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A stable colour per checkpoint (tab10, or tab20 beyond 10 checkpoints)."""
    cmap = matplotlib.colormaps["tab10" if len(checkpoints) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(checkpoints)}


def retained_norm(values: Sequence[float] | np.ndarray) -> Normalize:
    """A colour scale for retained fractions that always spans at least [0.4, 1.1]."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    low = min(0.4, float(finite.min())) if finite.size else 0.4
    high = max(1.1, float(finite.max())) if finite.size else 1.1
    return Normalize(vmin=low, vmax=high)


def tree_layout(graph: LineageGraph) -> dict[str, tuple[float, float]]:
    """(x, y) per checkpoint: x = depth from the base; leaves on consecutive rows, parents centred on children.

    Variants (``variant_of``) are laid out as extra children of the checkpoint they vary. Several bases are
    stacked one under the other.
    """
    kids: dict[str, list[str]] = {name: [] for name in graph.nodes}
    roots = []
    for node in graph.nodes.values():
        source = node.variant_of or node.parent
        if source is None:
            roots.append(node.name)
        else:
            kids[source].append(node.name)
    positions: dict[str, tuple[float, float]] = {}
    next_row = [0.0]

    def place(name: str, depth: int) -> float:
        if not kids[name]:
            row = next_row[0]
            next_row[0] += 1.0
        else:
            row = float(np.mean([place(child, depth + 1) for child in kids[name]]))
        positions[name] = (float(depth), -row)
        return row

    for root in roots:
        place(root, 0)
        next_row[0] += 0.5
    return positions


def plot_lineage(graph: LineageGraph, retained: pd.DataFrame, metrics: Sequence[str]) -> str:
    """The lineage tree, one panel per metric, nodes coloured by retained diversity averaged over tasks.

    ``retained``: columns checkpoint, task, metric, retained (fraction of the base). Edges are labelled with the
    child's stage; a thinking-suppressed variant hangs off its checkpoint with a dashed line.
    """
    positions = tree_layout(graph)
    per_node = retained.groupby(["metric", "checkpoint"])["retained"].mean() if len(retained) else pd.Series()
    norm = retained_norm(per_node.to_numpy() if len(per_node) else [])
    cmap = matplotlib.colormaps[RETAINED_CMAP]
    depth = max(x for x, _ in positions.values()) + 1
    rows = -min(y for _, y in positions.values()) + 1
    panels = max(len(metrics), 1)
    fig = Figure(figsize=(max(6.0, 2.3 * depth + 1.5), panels * max(2.2, 0.8 * rows + 0.9)))
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, list(metrics) or [""], strict=True):
        values = {
            name: float(per_node.get((metric, name), np.nan)) if len(per_node) else np.nan for name in graph.nodes
        }
        for node in graph.nodes.values():
            source = node.variant_of or node.parent
            if source is None:
                continue
            (x0, y0), (x1, y1) = positions[source], positions[node.name]
            dashed = node.variant_of is not None
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": "0.45",
                    "shrinkA": 14,
                    "shrinkB": 14,
                    "linestyle": "--" if dashed else "-",
                    "connectionstyle": "arc3,rad=0",
                },
            )
            label = "thinking off" if dashed else node.stage
            lx, ly = x0 + 0.6 * (x1 - x0), y0 + 0.6 * (y1 - y0)  # nearer the child: fanned-out labels stay apart
            ax.text(lx, ly + 0.06, label, ha="center", va="bottom", fontsize=8, color="0.25")
        for name, (x, y) in positions.items():
            value = values[name]
            colour = cmap(norm(value)) if math.isfinite(value) else (0.85, 0.85, 0.85, 1.0)
            ax.scatter([x], [y], s=700, color=colour, edgecolors="0.2", linewidths=0.8, zorder=3)
            text = f"{value:.0%}" if math.isfinite(value) else "n/a"
            ax.text(x, y, text, ha="center", va="center", fontsize=7, zorder=4, color=_ink(colour))
            ax.text(x, y - 0.3, name, ha="center", va="top", fontsize=8, zorder=4)
        ax.set_xlim(-0.5, depth - 0.5)
        ax.set_ylim(-rows + 0.3, 0.6)
        ax.set_axis_off()
        ax.set_title(f"retained {metric} diversity (mean over tasks)" if metric else "retained diversity")
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=ax, fraction=0.025, pad=0.01, label="retained (fraction of base)")
    return _finish(fig)


def plot_heatmap(
    retained: pd.DataFrame, metric: str, checkpoints: Sequence[str], tasks: Sequence[str] | None = None
) -> str:
    """Task x checkpoint heatmap of retained ``metric`` diversity (% of the base), annotated with the values.

    ``retained``: columns checkpoint, task, metric, retained. Columns follow ``checkpoints`` (tree order), rows
    ``tasks`` (default: sorted).
    """
    frame = retained[retained["metric"] == metric]
    table = frame.pivot_table(index="task", columns="checkpoint", values="retained", aggfunc="mean")
    table = table.reindex(columns=[c for c in checkpoints if c in table.columns])
    if tasks is not None:
        table = table.reindex(index=[t for t in tasks if t in table.index])
    norm = retained_norm(table.to_numpy().ravel())
    cmap: Colormap = matplotlib.colormaps[RETAINED_CMAP]
    fig = Figure(figsize=(max(5.0, 0.85 * table.shape[1] + 2.5), max(2.0, 0.38 * table.shape[0] + 1.4)))
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(dtype=float), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=35, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    for (row, col), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if math.isfinite(value):
            ax.text(col, row, f"{value:.0%}", ha="center", va="center", fontsize=7, color=_ink(cmap(norm(value))))
    ax.set_title(f"{metric}: retained diversity (% of base)")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return _finish(fig)


def plot_homogenization(homogenization: pd.DataFrame, task: str, metric: str, checkpoints: Sequence[str]) -> str:
    """Checkpoint x checkpoint heatmap of how alike two checkpoints' outputs are on ``task`` (``metric``'s mean
    similarity over prompts, annotated), ``checkpoints`` (lineage order) on both axes; the table's unordered pairs
    fill both halves, each checkpoint with itself the diagonal.

    ``homogenization``: columns task, metric, checkpoint_a, checkpoint_b, similarity.
    """
    frame = homogenization[(homogenization["task"] == task) & (homogenization["metric"] == metric)]
    present = set(frame["checkpoint_a"].astype(str)) | set(frame["checkpoint_b"].astype(str))
    names = [c for c in checkpoints if c in present] + sorted(present - set(checkpoints))
    where = {name: index for index, name in enumerate(names)}
    values = np.full((len(names), len(names)), np.nan)
    for a, b, similarity in frame[["checkpoint_a", "checkpoint_b", "similarity"]].itertuples(index=False):
        values[where[str(a)], where[str(b)]] = values[where[str(b)], where[str(a)]] = float(similarity)
    cmap: Colormap = matplotlib.colormaps["viridis"]
    finite = values[np.isfinite(values)]
    norm = Normalize(float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 1.0)
    side = max(3.5, 0.75 * len(names) + 2.0)
    fig = Figure(figsize=(side + 0.8, side))
    ax = fig.subplots()
    image = ax.imshow(values, cmap=cmap, norm=norm, aspect="equal")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (row, col), value in np.ndenumerate(values):
        if math.isfinite(value):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=_ink(cmap(norm(value))))
    ax.set_title(f"{task}: {metric} similarity of outputs")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _finish(fig)


#: The room left above and below a waterfall's data, as a fraction of the range it spans.
WATERFALL_MARGIN = 0.05


def waterfall_limits(values: Iterable[float]) -> tuple[float, float]:
    """The y range of a waterfall panel: every finite value (bar ends, CI ends, retained levels), 0 and 100
    included, with :data:`WATERFALL_MARGIN` of the span added on each side that goes beyond 0 (the retained bars
    stand on 0, so the axis starts there unless something lies below it)."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    low, high = min([0.0, *finite]), max([100.0, *finite])
    margin = WATERFALL_MARGIN * (high - low)
    return (low - margin if low < 0 else 0.0), high + margin


def plot_waterfall(edges: pd.DataFrame, path: Sequence[str], metrics: Sequence[str], tasks: Sequence[str]) -> str:
    """Stage waterfall of one lineage as an SVG: :func:`waterfall_figure`."""
    return _finish(waterfall_figure(edges, path, metrics, tasks))


def waterfall_figure(edges: pd.DataFrame, path: Sequence[str], metrics: Sequence[str], tasks: Sequence[str]) -> Figure:
    """Stage waterfall of one lineage (``path`` = base ... leaf), one panel per metric, one bar per task.

    Each stage's bar floats from the diversity before the stage to after it, as % of the base (starting at
    100%), so a loss (a negative change) points down; the error bar is the stage's 95% CI. Each panel's y axis
    fits its bars and CIs (:func:`waterfall_limits`). ``edges``: columns parent, child, stage, task, metric,
    delta_pct_base, delta_pct_base_ci_low, delta_pct_base_ci_high.
    """
    pairs = list(itertools.pairwise(path))
    stages = dict(zip(edges["child"], edges["stage"], strict=True))
    cmap = matplotlib.colormaps["tab10" if len(tasks) <= 10 else "tab20"]
    width = 0.8 / max(len(tasks), 1)
    panels = max(len(metrics), 1)
    ncols = min(panels, 2)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(ncols * max(5.0, 1.4 * (len(pairs) + 1) + 0.2 * len(tasks)), 2.8 * nrows))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for spare in axes[panels:]:
        spare.set_axis_off()
    colours = [cmap(t % cmap.N) for t in range(len(tasks))]
    for ax, metric in zip(axes, metrics, strict=False):
        rows = {
            (r.parent, r.child, r.task): r
            for r in edges[edges["metric"] == metric].itertuples(index=False)
            if math.isfinite(r.delta_pct_base)
        }
        bars: list[tuple[float, float, float, int]] = []  # x, bottom, height, task index
        errors: list[tuple[float, float, float, float]] = []  # x, y, below, above
        finals: list[tuple[float, float, int]] = []
        for t, task in enumerate(tasks):
            level = 100.0
            offset = (t - (len(tasks) - 1) / 2) * width
            for i, (parent, child) in enumerate(pairs):
                row = rows.get((parent, child, task))
                if row is None:
                    continue
                delta = float(row.delta_pct_base)
                bars.append((i + offset, level, delta, t))
                low, high = float(row.delta_pct_base_ci_low), float(row.delta_pct_base_ci_high)
                if math.isfinite(low) and math.isfinite(high):
                    end = level + delta
                    errors.append((i + offset, end, max(end - level - low, 0.0), max(level + high - end, 0.0)))
                level += delta
            if any(b[3] == t for b in bars):
                finals.append((len(pairs) + offset, level, t))
        if bars:
            x, bottom, height, index = zip(*bars, strict=True)
            ax.bar(
                x, height, width=width, bottom=bottom, color=[colours[t] for t in index], edgecolor="0.3", linewidth=0.4
            )
        if errors:
            x, y, below, above = zip(*errors, strict=True)
            ax.errorbar(x, y, yerr=[below, above], fmt="none", ecolor="0.1", capsize=2, elinewidth=0.8)
        if finals:
            x, level, index = zip(*finals, strict=True)
            ax.bar(x, level, width=width, color=[colours[t] for t in index], alpha=0.55, edgecolor="0.3", linewidth=0.4)
        ax.axhline(100, color="0.5", linestyle="--", linewidth=0.8)
        spans = [v for _, bottom, height, _ in bars for v in (bottom, bottom + height)]
        spans += [v for _, y, below, above in errors for v in (y - below, y + above)]
        ax.set_ylim(*waterfall_limits(spans + [level for _, level, _ in finals]))
        labels = [f"{stages.get(child, '')}\n{parent}→{child}" for parent, child in pairs] + ["retained\n(leaf)"]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("% of base")
        ax.set_title(f"{metric}: change per stage, % of base (95% CI)")
    if len(tasks) > 1:
        handles = [Patch(color=colours[t], label=task) for t, task in enumerate(tasks)]
        fig.legend(
            handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="task"
        )
    return fig


#: The widest share range a decomposition figure shows; a bar beyond it is cut at the edge and its shares written.
QFD_SHARE_RANGE = (-1.0, 2.0)


def plot_qfd(qfd: pd.DataFrame, metric: str) -> str:
    """Quality-filtered decomposition of ``metric``: per (comparison, task), quality-control vs residual share.

    ``qfd``: columns reference (else base), checkpoint, task, metric, delta_all, quality_control_share,
    residual_share and optionally share_outside_unit and delta_all_ci_includes_zero. The two shares sum to 1: the
    quality-control bar runs from 0 and the residual continues from its end; a negative share (outside [0, 1])
    runs leftwards from 0 instead and its comparison is marked with a dagger (†), a comparison whose ΔD_all CI
    includes 0 with a double dagger (‡); the axis label explains the marks used. The x axis fits the bars within
    :data:`QFD_SHARE_RANGE`; a bar beyond it is cut there and its shares are written next to ΔD_all, which is
    written next to each bar.
    """
    frame = qfd[qfd["metric"] == metric].reset_index(drop=True)
    references = frame["reference"] if "reference" in frame.columns else frame["base"]
    references = references.where(references.notna(), frame["base"] if "base" in frame.columns else "")
    outside = _flags(frame, "share_outside_unit")
    unclear = _flags(frame, "delta_all_ci_includes_zero")
    labels = [
        f"{ref} → {row.checkpoint} · {row.task}{' ‡' if zero else ''}{' †' if flag else ''}"
        for ref, row, flag, zero in zip(references, frame.itertuples(), outside, unclear, strict=True)
    ]
    fig = Figure(figsize=(7.5, max(1.8, 0.32 * len(frame) + 1.2)))
    ax = fig.subplots()
    y = np.arange(len(frame))
    quality = frame["quality_control_share"].to_numpy(dtype=float)
    residual = frame["residual_share"].to_numpy(dtype=float)
    ax.barh(y, quality, color="#e08214", label="quality control (wrong answers removed)")
    # Positive shares stack rightwards from 0, a negative one runs leftwards from 0, so neither hides the other.
    residual_left = np.where((residual >= 0) & (quality >= 0), np.nan_to_num(quality), 0.0)
    ax.barh(y, residual, left=residual_left, color="#4575b4", label="residual (correct answers narrowed)")
    ends = np.concatenate([quality, residual_left + residual, [0.0, 1.0]])
    ends = ends[np.isfinite(ends)]
    low = max(float(ends.min()) - 0.05, QFD_SHARE_RANGE[0])
    high = min(float(ends.max()) + 0.05, QFD_SHARE_RANGE[1])
    ax.set_xlim(low, high)
    for yi, delta, qc, res in zip(y, frame["delta_all"].to_numpy(dtype=float), quality, residual, strict=True):
        text = f"ΔD_all {delta:+.3f}".replace("-", "\N{MINUS SIGN}") if math.isfinite(delta) else ""
        if any(math.isfinite(v) and not low <= v <= high for v in (qc, res, qc + res)):
            shares = f"quality control {100 * qc:.0f}%, residual {100 * res:.0f}%".replace("-", "\N{MINUS SIGN}")
            text += f" (off scale: {shares})"
        if text:
            ax.text(1.02, yi, text, va="center", fontsize=7, transform=ax.get_yaxis_transform())
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", linewidth=0.6)
    ax.axvline(1, color="0.3", linewidth=0.6, linestyle=":")
    marks = [
        text
        for used, text in ((unclear.any(), "‡ ΔD_all's CI includes 0"), (outside.any(), "† a share outside [0, 1]"))
        if used
    ]
    ax.set_xlabel("; ".join(["share of ΔD_all (reference → checkpoint)", *marks]))
    ax.set_title(f"{metric}: quality-filtered decomposition")
    # Below the tick labels and the axis label, a fixed distance whatever the figure's height.
    below = offset_copy(ax.transAxes, fig=fig, y=-0.42, units="inches")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncol=2, frameon=False)
    return _finish(fig)


def _flags(frame: pd.DataFrame, column: str) -> pd.Series:
    """A boolean flag column of ``frame``, all False when it is absent (NaN counts as False)."""
    return frame[column].eq(True) if column in frame.columns else pd.Series(False, index=frame.index)


def plot_thinking(thinking: pd.DataFrame, metrics: Sequence[str]) -> str:
    """Chain-of-thought ablation: diversity (one panel per metric) and accuracy, thinking on vs suppressed.

    ``thinking``: columns checkpoint, variant, task, metric, diversity_on, diversity_suppressed,
    accuracy_on, accuracy_suppressed. Bars are grouped by (checkpoint, task).
    """
    groups = thinking[["checkpoint", "task"]].drop_duplicates().reset_index(drop=True)
    labels = [f"{row.checkpoint}\n{row.task}" for row in groups.itertuples()]
    accuracy = thinking.drop_duplicates(["checkpoint", "task"]).set_index(["checkpoint", "task"])
    has_accuracy = bool(accuracy[["accuracy_on", "accuracy_suppressed"]].notna().any().any())
    present = [m for m in metrics if m in set(thinking["metric"])]
    panels = len(present) + int(has_accuracy)
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) + 2), 2.5 * max(panels, 1)))
    axes = fig.subplots(max(panels, 1), 1, squeeze=False)[:, 0]
    x = np.arange(len(groups))
    for ax, metric in zip(axes, present, strict=False):
        frame = thinking[thinking["metric"] == metric].set_index(["checkpoint", "task"])
        keys = list(groups.itertuples(index=False, name=None))
        on = [float(frame.loc[k, "diversity_on"]) if k in frame.index else np.nan for k in keys]
        off = [float(frame.loc[k, "diversity_suppressed"]) if k in frame.index else np.nan for k in keys]
        ax.bar(x - 0.2, on, width=0.4, color="#1b7837", label="thinking on")
        ax.bar(x + 0.2, off, width=0.4, color="#af8dc3", label="thinking suppressed")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} diversity of the responses")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if has_accuracy:
        ax = axes[len(present)]
        keys = list(groups.itertuples(index=False, name=None))
        ax.bar(x - 0.2, [accuracy.loc[k, "accuracy_on"] for k in keys], width=0.4, color="#1b7837", label="thinking on")
        ax.bar(
            x + 0.2,
            [accuracy.loc[k, "accuracy_suppressed"] for k in keys],
            width=0.4,
            color="#af8dc3",
            label="thinking suppressed",
        )
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title("accuracy")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _finish(fig)


def plot_curves(
    curves: pd.DataFrame,
    passk: pd.DataFrame,
    task: str,
    metrics: Sequence[str],
    colours: Mapping[str, tuple[float, float, float, float]],
) -> str:
    """Diversity vs K for one task (one panel per metric, one line per checkpoint, 95% CI band), plus pass@k.

    ``curves``: columns checkpoint, task, metric, k, mean, ci_low, ci_high. ``passk``: columns checkpoint,
    task, k, pass_at_k, repeated rows (one per metric) allowed; its panel is drawn only when the task has pass@k rows.
    """
    frame = curves[curves["task"] == task]
    present = [m for m in metrics if m in set(frame["metric"])]
    pk = passk[passk["task"] == task].drop_duplicates(["checkpoint", "k"]) if len(passk) else passk
    panels = len(present) + int(len(pk) > 0)
    fig = Figure(figsize=(3.3 * max(panels, 1) + 1.5, 2.8))
    axes = fig.subplots(1, max(panels, 1), squeeze=False)[0]
    for ax, metric in zip(axes, present, strict=False):
        for checkpoint, group in _by_checkpoint(frame[frame["metric"] == metric], colours):
            colour = colours.get(str(checkpoint), (0.3, 0.3, 0.3, 1.0))
            ax.plot(group["k"], group["mean"], marker="o", markersize=3, color=colour, label=str(checkpoint))
            ax.fill_between(group["k"], group["ci_low"], group["ci_high"], color=colour, alpha=0.15, linewidth=0)
        ax.set_xlabel("k (samples per prompt)")
        ax.set_title(metric)
    if len(pk):
        ax = axes[len(present)]
        for checkpoint, group in _by_checkpoint(pk, colours):
            colour = colours.get(str(checkpoint), (0.3, 0.3, 0.3, 1.0))
            ax.plot(group["k"], group["pass_at_k"], marker="s", markersize=3, color=colour, label=str(checkpoint))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k")
        ax.set_title("pass@k")
    if panels:
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.suptitle(task)
    return _finish(fig)


def plot_diversity_quality(
    rows: pd.DataFrame,
    task: str,
    metric: str,
    edges: Sequence[tuple[str, str]],
    colours: Mapping[str, tuple[float, float, float, float]],
) -> str:
    """Quality (y) against ``metric`` diversity (x) for one task: a point per checkpoint with its 95% CIs as error
    bars, and an arrow along each lineage edge, parent -> child.

    ``rows``: the ``diversity_quality`` table (columns task, metric, checkpoint, diversity and quality with their
    ``_ci_low`` / ``_ci_high``, quality_kind, quality_source, is_baseline). Win rates and pass@1 are drawn in %
    (a dashed line at 50% for a win rate against a baseline checkpoint), the WB-Score on its own 1-10 scale; a
    baseline's point (win rate 50% by definition) is hollow.
    """
    frame = rows[(rows["task"] == task) & (rows["metric"] == metric)].reset_index(drop=True)
    scale, quality_label = _quality_axis(frame)
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    points: dict[str, tuple[float, float]] = {}
    for row in frame.itertuples(index=False):
        x, y = float(row.diversity), scale * float(row.quality)
        colour = colours.get(str(row.checkpoint), (0.3, 0.3, 0.3, 1.0))
        xerr = _error(x, row.diversity_ci_low, row.diversity_ci_high, 1.0)
        yerr = _error(y, row.quality_ci_low, row.quality_ci_high, scale)
        hollow = bool(row.is_baseline)
        ax.errorbar(
            [x], [y], xerr=xerr, yerr=yerr, fmt="o", color=colour, ecolor=colour, elinewidth=0.9, capsize=2,
            markersize=6, markerfacecolor="white" if hollow else colour, zorder=3,
        )  # fmt: skip
        ax.annotate(
            str(row.checkpoint), (x, y), xytext=(5, 5), textcoords="offset points", fontsize=7, color="0.15", zorder=4
        )
        points[str(row.checkpoint)] = (x, y)
    for parent, child in edges:
        if parent in points and child in points:
            ax.annotate(
                "",
                xy=points[child],
                xytext=points[parent],
                arrowprops={"arrowstyle": "-|>", "color": "0.45", "shrinkA": 5, "shrinkB": 5, "linewidth": 0.9},
                zorder=2,
            )
    kinds = [str(k) for k in frame["quality_kind"].dropna().unique()]
    if scale == 100.0 and any(k.startswith("win rate vs ") and k != "win rate vs reference" for k in kinds):
        ax.axhline(50, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlabel(f"{metric} diversity (mean over prompts)")
    ax.set_ylabel(quality_label)
    ax.set_title(f"{task}: quality against {metric} diversity (95% CI)")
    return _finish(fig)


def _quality_axis(frame: pd.DataFrame) -> tuple[float, str]:
    """How a figure draws the quality of ``frame`` (columns quality_kind, quality_source): its scale (100: win
    rates and pass@1 in %; 1: the WB-Score alone, on its 1-10 scale) and its axis label (the kinds shown)."""
    sources = [str(s) for s in frame["quality_source"].dropna().unique()]
    scale = 1.0 if sources == ["judge:wb_score"] else 100.0
    kinds = [str(k) for k in frame["quality_kind"].dropna().unique() if str(k)]
    return scale, " / ".join(kinds) + (" (%)" if scale == 100.0 else "")


#: How a point's label abbreviates each swept parameter (``T1.4 m0.1``).
SETTING_ABBREVIATIONS = {"temperature": "T", "top_p": "p", "min_p": "m"}


#: Line styles of one checkpoint's lines in the recovery plot, one per value of the swept parameters after the first.
LINE_STYLES = ("-", "--", ":", "-.")


def setting_label(values: Mapping[str, Any]) -> str:
    """A sweep setting in a few characters, for a figure: ``T1.4 p0.95 m0.1``; a missing value (min-p off) reads
    ``m off``; a parameter without an abbreviation keeps its name (``name=value``)."""
    parts = []
    for name, value in values.items():
        short = SETTING_ABBREVIATIONS.get(name, f"{name}=")
        number = _number(value)
        parts.append(f"{short}{format_value(number)}" if number is not None else f"{short} {format_value(None)}")
    return " ".join(parts)


def plot_recovery(
    sweep: pd.DataFrame,
    task: str,
    metric: str,
    parameters: Sequence[str],
    checkpoints: Sequence[str],
    bases: Sequence[str],
    colours: Mapping[str, tuple[float, float, float, float]],
) -> str:
    """The recovery frontier of one task: ``metric`` diversity (y, mean over prompts with its 95% CI) of each
    checkpoint at each setting of a sampling sweep.

    ``sweep``: the analysis' ``sweep`` table (columns checkpoint, task, metric, the swept ``parameters``,
    is_study_setting, in_sweep, mean, ci_low, ci_high, quality, quality_kind, quality_source), each checkpoint's
    rows in the sweep's order. One line per checkpoint of ``checkpoints`` (in that order, coloured by ``colours``)
    through its settings in the sweep's order, its point at the study's setting ringed. Each checkpoint of
    ``bases`` at the study's setting is a star, with a dashed line across at its diversity.

    x is the quality of the same samples (win rates and pass@1 in %, the WB-Score on its 1-10 scale) when every
    point of the lines has a finite quality, each point labelled with its setting (:func:`setting_label`; a base
    without a quality keeps its dashed line but has no star). Otherwise (the task has no quality, or some setting
    lacks one) x is the setting's position in the sweep's order (the study's setting first when the sweep does not
    list it), the settings as tick labels.

    The SVG's groups are identifiable: ``base-star-N`` and ``base-line-N`` (N: the base's index in ``bases``)
    and ``study-setting-N`` (N: the checkpoint's index in ``checkpoints``).
    """
    frame = sweep[(sweep["task"] == task) & (sweep["metric"] == metric)]
    frame = frame[frame["checkpoint"].isin([*checkpoints, *bases])].reset_index(drop=True)
    keys = [_setting_key(row, parameters) for row in frame.to_dict("records")]
    listed = [key for key, in_sweep in zip(keys, frame["in_sweep"].eq(True), strict=True) if in_sweep]
    study = [key for key, own in zip(keys, frame["is_study_setting"].eq(True), strict=True) if own]
    order = list(dict.fromkeys([*study[:1], *listed] if study and study[0] not in listed else listed))
    position = {key: index for index, key in enumerate(order)}
    quality = frame["quality"].to_numpy(dtype=np.float64)
    on_lines = (
        frame["checkpoint"].isin(checkpoints) & np.isfinite(frame["mean"].to_numpy(dtype=np.float64))
    ).to_numpy()
    some_quality = bool(np.isfinite(quality).any())
    by_quality = some_quality and bool(np.isfinite(quality[on_lines]).all())
    scale, quality_label = _quality_axis(frame[np.isfinite(quality)]) if by_quality else (1.0, "")
    width = 6.4 if by_quality else max(5.6, 0.75 * len(order) + 3.0)
    fig = Figure(figsize=(width, 3.9))
    ax = fig.subplots()
    handles: list[Artist] = []
    spread = 0.08 if len(checkpoints) > 1 else 0.0
    for index, checkpoint in enumerate(checkpoints):
        colour = colours.get(checkpoint, (0.3, 0.3, 0.3, 1.0))
        shift = (index - (len(checkpoints) - 1) / 2) * spread
        points = []
        for key, row in zip(keys, frame.to_dict("records"), strict=True):
            if row["checkpoint"] != checkpoint or key not in position:
                continue
            x = scale * float(row["quality"]) if by_quality else position[key] + shift
            if math.isfinite(x) and math.isfinite(float(row["mean"])):
                points.append((position[key], x, row, key))
        points.sort(key=lambda point: point[0])
        if not points:
            continue
        # One line per value of the other swept parameters, through the first one's values (T at min_p off, T at
        # min_p 0.1): a single line through every combination would zigzag between them.
        strands: dict[tuple[float | None, ...], list[tuple[int, float, dict[str, Any], tuple[float | None, ...]]]]
        strands = {}
        for point in points:
            strands.setdefault(point[3][1:], []).append(point)
        for number, (rest, strand) in enumerate(strands.items()):
            style = LINE_STYLES[number % len(LINE_STYLES)]
            others = f" ({setting_label(dict(zip(parameters[1:], rest, strict=True)))})" if rest else ""
            line = ax.errorbar(
                [x for _, x, _, _ in strand], [float(row["mean"]) for _, _, row, _ in strand],
                yerr=[[_below(row) for _, _, row, _ in strand], [_above(row) for _, _, row, _ in strand]],
                fmt="o", linestyle=style, color=colour, ecolor=colour, elinewidth=0.9, capsize=2, markersize=4,
                linewidth=1.1, zorder=3,
                label=checkpoint + others,
            )  # fmt: skip
            handles.append(line)
        for _, x, row, key in points:
            if by_quality:
                label = setting_label(dict(zip(parameters, key, strict=True)))
                ax.annotate(label, (x, float(row["mean"])), xytext=(4, 4), textcoords="offset points", fontsize=6)
            if bool(row["is_study_setting"]):
                ax.scatter(
                    [x], [float(row["mean"])], s=150, facecolors="none", edgecolors=colour, linewidths=1.3,
                    zorder=4, gid=f"study-setting-{index}",
                )  # fmt: skip
    if any(frame["checkpoint"].isin(checkpoints) & frame["is_study_setting"].eq(True)):
        ring = Line2D([], [], linestyle="none", marker="o", markersize=9, markerfacecolor="none", color="0.3")
        ring.set_label("the study's setting")
        handles.append(ring)
    for index, base in enumerate(bases):
        rows = frame[(frame["checkpoint"] == base) & frame["is_study_setting"].eq(True)]
        if rows.empty or not math.isfinite(float(rows["mean"].iloc[0])):
            continue
        row = rows.iloc[0]
        y = float(row["mean"])
        colour = colours.get(base, (0.3, 0.3, 0.3, 1.0))
        ax.axhline(y, color=colour, linestyle="--", linewidth=0.9, zorder=1, gid=f"base-line-{index}")
        key = _setting_key(row.to_dict(), parameters)
        x = scale * float(row["quality"]) if by_quality else float(position.get(key, np.nan))
        if math.isfinite(x):
            ax.scatter(
                [x], [y], marker="*", s=190, color=colour, edgecolors="0.1", linewidths=0.6, zorder=5,
                gid=f"base-star-{index}",
            )  # fmt: skip
        marker = Line2D([], [], color=colour, linestyle="--", marker="*", markersize=10, markeredgecolor="0.1")
        marker.set_label(f"{base} at the study's setting")
        handles.append(marker)
    if by_quality:
        ax.set_xlabel(f"quality of the same samples: {quality_label}")
    else:
        labels = [setting_label(dict(zip(parameters, key, strict=True))) for key in order]
        ax.set_xticks(range(len(order)), labels, rotation=30, ha="right")
        why = "quality missing at some settings" if some_quality else "no quality for this task"
        ax.set_xlabel(f"setting, in the sweep's order ({why})")
    ax.set_ylabel(f"{metric} diversity (mean over prompts)")
    ax.set_title(f"{task}: {metric} diversity across the sweep (95% CI)")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _finish(fig)


def _setting_key(row: Mapping[str, Any], parameters: Sequence[str]) -> tuple[float | None, ...]:
    """A row's setting as a comparable key: its swept values, a missing one (off) as None."""
    return tuple(_number(row.get(name)) for name in parameters)


def _number(value: Any) -> float | None:
    """``value`` as a float; None when it is missing (None, NaN, pandas NA, not a number)."""
    return None if missing(value) else float(value)


def _below(row: Mapping[str, Any]) -> float:
    """How far a sweep row's CI reaches below its mean (0 without a CI)."""
    low = _number(row.get("ci_low"))
    return 0.0 if low is None else max(float(row["mean"]) - low, 0.0)


def _above(row: Mapping[str, Any]) -> float:
    """How far a sweep row's CI reaches above its mean (0 without a CI)."""
    high = _number(row.get("ci_high"))
    return 0.0 if high is None else max(high - float(row["mean"]), 0.0)


def _error(centre: float, low: object, high: object, scale: float) -> list[list[float]] | None:
    """Error-bar lengths [[below], [above]] of a CI scaled by ``scale``; None when either end is missing."""
    ends = [scale * float(v) for v in (low, high) if v is not None and math.isfinite(float(v))]
    if len(ends) < 2:
        return None
    return [[max(centre - ends[0], 0.0)], [max(ends[1] - centre, 0.0)]]


def _by_checkpoint(frame: pd.DataFrame, order: Mapping[str, object]) -> list[tuple[str, pd.DataFrame]]:
    """``frame`` split by checkpoint, in ``order`` (then any others), each part sorted by k."""
    names = [n for n in order if (frame["checkpoint"] == n).any()]
    names += sorted(set(frame["checkpoint"].astype(str)) - set(names))
    return [(n, frame[frame["checkpoint"] == n].sort_values("k")) for n in names]


def _ink(background: tuple[float, ...]) -> str:
    """Black or white text, whichever reads better on ``background`` (RGB(A) in [0, 1])."""
    red, green, blue = background[:3]
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def _finish(fig: Figure) -> str:
    fig.tight_layout()
    return svg_of(fig)
