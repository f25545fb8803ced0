"""The headline table ``divtrace run`` / ``analyze`` / ``report`` print: collapse sites read as the report does."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from divtrace.analysis import analyze, write_analysis
from divtrace.cli.outcome import findings
from divtrace.cli.tables import COLLAPSE_CAPTION, collapse_frame, collapse_table
from divtrace.stats import BootstrapSettings
from divtrace.study.lineage import CheckpointNode, LineageGraph


def _analysis(tmp_path: Path, ratios: dict[str, float]) -> Path:
    """base -> instruct, one task, each metric multiplied by its ratio on every prompt; the analysis directory."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, 12)
    rows = [
        (name, "open_ended", f"p{p}", metric, "all", value * (ratio if name == "instruct" else 1.0), 8)
        for metric, ratio in ratios.items()
        for name in ("base", "instruct")
        for p, value in enumerate(base)
    ]
    scores = pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"])
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("instruct", "instruct", "base")])
    out = tmp_path / "analysis"
    write_analysis(analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100)), out)
    return out


def _printed(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(collapse_table(frame))
    return buffer.getvalue()


def test_a_gain_is_not_listed_as_a_collapse_site_and_no_unused_footnote(tmp_path: Path) -> None:
    """The quickstart's open_ended EAD gained (+12.3%) and was listed as the collapse site, under a
    "* CI excludes 0" footnote that no row used."""
    out = _analysis(tmp_path, {"ead": 1.123, "sbert": 0.72})
    frame = collapse_frame(out / "collapse_sites.parquet", out / "retained.parquet").set_index("metric")
    assert frame.loc["ead", "collapse site"] == "none: no significant loss, diversity gained"
    assert frame.loc["ead", "change, % of base [95% CI]"] == "-"
    assert frame.loc["sbert", "collapse site"] == "base -> instruct (instruct)"
    assert frame.loc["sbert", "change, % of base [95% CI]"] == "-28.0 [-28.0, -28.0]"  # signed: negative = lost
    printed = _printed(frame.reset_index())
    assert "*" not in printed and "negative = diversity lost" in printed
    assert COLLAPSE_CAPTION not in _printed(frame.iloc[:0])  # no rows, no caption

    sentences = findings(out / "table1.parquet")
    loss = "\N{MINUS SIGN}28.0"
    assert sentences == [
        f"instruct · sbert: collapses at instruct: {loss}% [{loss}, {loss}] of base.",
        "instruct · ead: no significant loss; gains at instruct: +12.3% [+12.3, +12.3].",
    ]
    assert findings(tmp_path / "missing.parquet") == []
