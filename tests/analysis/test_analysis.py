"""The analyze stage on constructed scores whose true diversity changes are known."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from divtrace.analysis import (
    GAINED,
    NO_SIGNIFICANT_LOSS,
    SIGN_CONVENTION,
    SITE,
    AnalysisResult,
    analyze,
    collapse_step,
    headline_table,
    write_analysis,
)
from divtrace.errors import DivtraceError
from divtrace.stats import BootstrapSettings, pass_at_k_per_prompt
from divtrace.study.lineage import CheckpointNode, LineageGraph

N_PROMPTS = 60
FAST = BootstrapSettings(resamples=400)


def _rows(
    checkpoint: str,
    values: np.ndarray,
    *,
    task: str = "math",
    metric: str = "sbert",
    subset: str = "all",
    n_outputs: int = 16,
    prompts: list[str] | None = None,
) -> pd.DataFrame:
    prompts = prompts if prompts is not None else [f"p{i:02d}" for i in range(len(values))]
    return pd.DataFrame(
        {
            "checkpoint": checkpoint,
            "task": task,
            "prompt_id": prompts,
            "metric": metric,
            "subset": subset,
            "value": values,
            "n_outputs": n_outputs,
        }
    )


def _graph() -> LineageGraph:
    return LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("sft", "sft", parent="base"),
            CheckpointNode("dpo", "dpo", parent="sft"),
            CheckpointNode("rl", "rl", parent="dpo"),
            CheckpointNode("rl-zero", "rl-zero", parent="base"),
        ]
    )


LEVELS = {"base": 0.80, "sft": 0.75, "dpo": 0.45, "rl": 0.40, "rl-zero": 0.70}


def _lineage_scores(seed: int = 0) -> pd.DataFrame:
    """Per-prompt values: a shared prompt effect plus small independent noise around each checkpoint's level."""
    rng = np.random.default_rng(seed)
    prompt_effect = rng.normal(0, 0.03, N_PROMPTS)
    frames = []
    for metric, scale in (("sbert", 1.0), ("ead", 0.5)):
        for name, level in LEVELS.items():
            frames.append(_rows(name, scale * (level + prompt_effect + rng.normal(0, 0.01, N_PROMPTS)), metric=metric))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def lineage_result() -> tuple[pd.DataFrame, AnalysisResult]:
    scores = _lineage_scores()
    return scores, analyze(scores, None, _graph(), bootstrap=FAST)


def _values(scores: pd.DataFrame, checkpoint: str, metric: str = "sbert", subset: str = "all") -> pd.Series:
    rows = scores[(scores.checkpoint == checkpoint) & (scores.metric == metric) & (scores.subset == subset)]
    return rows.set_index("prompt_id")["value"]


def test_edge_deltas_are_exact_mean_differences(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    scores, result = lineage_result
    edges = result.edges[result.edges.metric == "sbert"].set_index(["parent", "child"])
    assert set(edges.index) == {("base", "sft"), ("sft", "dpo"), ("dpo", "rl"), ("base", "rl-zero")}
    for parent, child in edges.index:
        row = edges.loc[(parent, child)]
        hand = _values(scores, child).mean() - _values(scores, parent).mean()
        assert row["delta"] == pytest.approx(hand, abs=1e-12)
        assert row["delta_pct_base"] == pytest.approx(100 * hand / _values(scores, "base").mean(), abs=1e-9)
        assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
        assert row["n_prompts"] == N_PROMPTS and row["n_dropped"] == 0
        assert row["stage"] == child
    assert edges.loc[("sft", "dpo"), "significant"]
    assert edges.loc[("sft", "dpo"), "delta"] == pytest.approx(-0.30, abs=0.01)


def test_collapse_site_and_branch_lineage(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    _, result = lineage_result
    sites = result.collapse_sites.set_index(["lineage", "metric"])
    assert set(sites.index.get_level_values("lineage")) == {"rl", "rl-zero"}
    for metric in ("sbert", "ead"):
        main = sites.loc[("rl", metric)]
        assert (main["parent"], main["child"], main["stage"]) == ("sft", "dpo", "dpo")
        assert main["delta_ci_high"] < 0 and main["status"] == "collapse site"
        assert main["n_edges"] == main["n_edges_with_data"] == 3
        # -0.30 of a total -0.40 (scaled by 0.5 for ead, the share is scale-free)
        assert main["loss_share"] == pytest.approx(0.75, abs=0.03)
        branch = sites.loc[("rl-zero", metric)]
        assert (branch["base"], branch["parent"], branch["child"]) == ("base", "base", "rl-zero")
        assert branch["loss_share"] == pytest.approx(1.0, abs=1e-12)
        assert branch["n_edges"] == 1


def test_retained_fraction_of_base(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    scores, result = lineage_result
    retained = result.retained[result.retained.metric == "sbert"].set_index("checkpoint")
    assert retained.loc["rl", "base"] == "base"
    assert retained.loc["rl", "retained"] == pytest.approx(0.5, abs=0.02)
    hand = _values(scores, "rl").mean() / _values(scores, "base").mean()
    assert retained.loc["rl", "retained"] == pytest.approx(hand, rel=1e-12)
    assert retained.loc["rl", "retained_ci_low"] < hand < retained.loc["rl", "retained_ci_high"]
    assert retained.loc["rl", "retained_ci_high"] < 0.6
    assert retained.loc["base", "retained"] == 1.0
    assert retained.loc["rl-zero", "retained"] == pytest.approx(0.70 / 0.80, abs=0.02)


def _scipy_mean_ci(values: np.ndarray, settings: BootstrapSettings) -> tuple[float, float]:
    """The textbook percentile bootstrap of the mean, straight from scipy (the reference for the fast helper)."""
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=settings.resamples,
        confidence_level=settings.confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(settings.seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def test_checkpoint_means_match_the_scoring_bootstrap(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    scores, result = lineage_result
    means = result.checkpoint_means.set_index(["checkpoint", "metric"])
    values = _values(scores, "dpo").to_numpy()
    row = means.loc[("dpo", "sbert")]
    assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
    assert row["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
    # The vectorised paired helper resamples exactly like one plain scipy call on the cell's values.
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(_scipy_mean_ci(values, FAST), abs=1e-12)
    assert row["stage"] == "dpo" and row["n_prompts"] == N_PROMPTS and row["mean_n_outputs"] == 16


def test_headline_is_table_one(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    _, result = lineage_result
    table = result.headline[(result.headline.lineage == "rl") & (result.headline.metric == "sbert")]
    assert list(table["stage"]) == ["sft", "dpo", "rl"] and list(table["step"]) == [1, 2, 3]
    assert list(table["is_collapse_site"]) == [False, True, False]
    # Changes along the path (negative = lost) add up to the leaf's: retained % - 100.
    assert table["change_pct_base"].sum() == pytest.approx(table["retained_pct"].iloc[0] - 100, abs=1e-9)
    assert table["retained_pct"].iloc[0] == pytest.approx(50, abs=2)
    assert (table["change_pct_base_ci_low"] <= table["change_pct_base"]).all()
    edges = result.edges.set_index(["child", "metric"])
    assert list(table["change_pct_base"]) == [edges.loc[(c, "sbert"), "delta_pct_base"] for c in table["child"]]
    pd.testing.assert_frame_equal(headline_table(result), result.headline)


def test_missing_prompts_are_dropped_from_paired_comparisons_and_counted() -> None:
    scores = _lineage_scores()
    scores = scores[scores.metric == "sbert"]
    # dpo lacks 5 prompts entirely and has a NaN for one more.
    scores = scores[~((scores.checkpoint == "dpo") & scores.prompt_id.isin([f"p{i:02d}" for i in range(5)]))].copy()
    scores.loc[(scores.checkpoint == "dpo") & (scores.prompt_id == "p10"), "value"] = np.nan
    result = analyze(scores, None, _graph(), bootstrap=FAST)
    edges = result.edges.set_index(["parent", "child"])
    kept = [f"p{i:02d}" for i in range(5, N_PROMPTS) if i != 10]
    for parent, child in (("sft", "dpo"), ("dpo", "rl")):
        row = edges.loc[(parent, child)]
        assert row["n_prompts"] == N_PROMPTS - 6 and row["n_dropped"] == 6
        hand = _values(scores, child)[kept].mean() - _values(scores, parent)[kept].mean()
        assert row["delta"] == pytest.approx(hand, abs=1e-12)
    assert edges.loc[("base", "sft"), "n_dropped"] == 0
    retained = result.retained.set_index("checkpoint")
    assert retained.loc["dpo", "n_prompts"] == N_PROMPTS - 6 and retained.loc["dpo", "n_dropped"] == 6
    means = result.checkpoint_means.set_index("checkpoint")
    assert means.loc["dpo", "n_prompts"] == N_PROMPTS - 6


def _qfd_scores() -> pd.DataFrame:
    """base -> half (ΔD_correct = ΔD_all / 2), base -> qc (ΔD_correct = 0), base -> flat (ΔD_all = 0)."""
    rng = np.random.default_rng(1)
    prompts = [f"p{i:02d}" for i in range(N_PROMPTS)]
    noise = lambda: rng.normal(0, 0.005, N_PROMPTS)  # noqa: E731
    frames = [
        _rows("base", 0.80 + noise()),
        _rows("base", 0.70 + noise(), subset="correct", n_outputs=6),
        _rows("half", 0.60 + noise()),
        _rows("half", 0.60 + noise(), subset="correct", n_outputs=5),
        _rows("qc", 0.60 + noise()),
        _rows("qc", 0.70 + noise(), subset="correct", n_outputs=9),
        _rows("flat", 0.80 + noise()),
        _rows("flat", 0.70 + noise(), subset="correct", n_outputs=6),
    ]
    scores = pd.concat(frames, ignore_index=True)
    # < 2 correct: base lacks a correct row on p00-p03, half on p04-p09 (so 10 prompts are dropped for half).
    # Those prompts have very different D_all, so using them would bias ΔD_all: the decomposition must not.
    no_base = prompts[:4]
    no_half = prompts[4:10]
    scores = scores[~((scores.subset == "correct") & (scores.checkpoint == "base") & scores.prompt_id.isin(no_base))]
    scores = scores[~((scores.subset == "correct") & (scores.checkpoint == "half") & scores.prompt_id.isin(no_half))]
    scores = scores.copy()
    odd = scores.prompt_id.isin(no_base + no_half) & (scores.subset == "all") & (scores.checkpoint == "half")
    scores.loc[odd, "value"] = 0.1
    return scores


def _qfd_graph() -> LineageGraph:
    return LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("half", "sft", parent="base"),
            CheckpointNode("qc", "rl", parent="base"),
            CheckpointNode("flat", "dpo", parent="base"),
        ]
    )


def test_quality_filtered_decomposition_paired_option() -> None:
    scores = _qfd_scores()
    result = analyze(scores, None, _qfd_graph(), bootstrap=FAST, qfd_pairing="paired")
    assert result.settings["qfd"]["pairing"] == "paired"
    qfd = result.qfd.set_index("checkpoint")
    assert set(qfd.index) == {"half", "qc", "flat"} and (qfd["reference"] == "base").all()
    assert (qfd["pairing"] == "paired").all() and (qfd["comparison"] == "lineage").all()

    half = qfd.loc["half"]
    assert (half["n_qualifying_reference"], half["n_qualifying_checkpoint"], half["n_qualifying_both"]) == (56, 54, 50)
    assert half["n_prompts_reference"] == half["n_prompts_checkpoint"] == 50  # paired: every mean on the 50
    valid = [f"p{i:02d}" for i in range(10, N_PROMPTS)]
    hand_all = _values(scores, "half")[valid].mean() - _values(scores, "base")[valid].mean()
    hand_correct = (
        _values(scores, "half", subset="correct")[valid].mean()
        - _values(scores, "base", subset="correct")[valid].mean()
    )
    assert half["delta_all"] == pytest.approx(hand_all, abs=1e-12)
    assert half["delta_correct"] == pytest.approx(hand_correct, abs=1e-12)
    assert half["residual_share"] == pytest.approx(0.5, abs=0.03)
    assert half["quality_control_share"] == pytest.approx(1 - half["residual_share"], abs=1e-12)
    assert half["residual_share_ci_low"] < half["residual_share"] < half["residual_share_ci_high"]
    assert half["delta_all_ci_high"] < 0 and half["note"] == "" and not half["share_outside_unit"]
    assert half["mean_n_correct_reference"] == 6 and half["mean_n_correct_checkpoint"] == 5

    qc = qfd.loc["qc"]
    assert qc["n_qualifying_both"] == 56
    assert qc["delta_correct_ci_low"] < 0 < qc["delta_correct_ci_high"]
    assert qc["residual_share"] == pytest.approx(0.0, abs=0.03)
    assert qc["quality_control_share"] == pytest.approx(1.0, abs=0.03)

    flat = qfd.loc["flat"]
    assert flat["delta_all_ci_low"] < 0 < flat["delta_all_ci_high"]
    # Shown (the paper shows every share) and flagged, not blanked.
    assert np.isfinite(flat["residual_share"]) and np.isfinite(flat["quality_control_share"])
    assert flat["delta_all_ci_includes_zero"] and "undefined" not in flat["note"]
    assert not half["delta_all_ci_includes_zero"] and not qc["delta_all_ci_includes_zero"]

    # The default (the paper's) form: each checkpoint over its own prompts, so half's 10 odd prompts (D_all 0.1,
    # no qualifying correct subset for one of the two) now enter half's D_all.
    unpaired = analyze(scores, None, _qfd_graph(), bootstrap=FAST).qfd.set_index("checkpoint")
    assert (unpaired["pairing"] == "unpaired").all()
    row = unpaired.loc["half"]
    assert (row["n_prompts_reference"], row["n_prompts_checkpoint"]) == (N_PROMPTS, N_PROMPTS)
    assert row["delta_all"] == pytest.approx(_values(scores, "half").mean() - _values(scores, "base").mean(), abs=1e-12)
    assert row["delta_all"] < half["delta_all"] - 0.05
    with pytest.raises(DivtraceError, match="pairing"):
        analyze(scores, None, _qfd_graph(), bootstrap=FAST, qfd_pairing="both")


def _qfd_rows(checkpoint: str, all_values: list[float], correct: dict[str, tuple[float, int]], **kw: object) -> list:
    """``all`` rows on prompts p00.. and ``correct`` rows {prompt: (value, K_c)} (K_c >= 2: qualifying)."""
    frames = [_rows(checkpoint, np.array(all_values), **kw)]
    if correct:
        prompts = list(correct)
        values = np.array([correct[p][0] for p in prompts])
        frame = _rows(checkpoint, values, subset="correct", prompts=prompts, **kw)
        frames.append(frame.assign(n_outputs=[correct[p][1] for p in prompts]))
    return frames


def test_unpaired_decomposition_by_hand_differs_from_paired() -> None:
    """4 prompts; base qualifies on p00, p01, p03 and sft on p00, p02, p03, so only p00 and p03 qualify in both.

    D_all:     base 0.8 0.6 0.7 0.5 (mean 0.65)     sft 0.4 0.5 0.3 0.2 (mean 0.35)
    D_correct: base 0.6 0.5  -  0.4                 sft 0.3  -  0.35 0.25

    Unpaired (the paper): ΔD_all = 0.35 - 0.65 = -0.30; D_correct base = (0.6 + 0.5 + 0.4) / 3 = 0.5, sft =
    (0.3 + 0.35 + 0.25) / 3 = 0.3, ΔD_correct = -0.20; residual = -0.20 / -0.30 = 2/3, quality control = 1/3.
    Paired (p00, p03): ΔD_all = (0.4 + 0.2) / 2 - (0.8 + 0.5) / 2 = 0.30 - 0.65 = -0.35; ΔD_correct =
    (0.3 + 0.25) / 2 - (0.6 + 0.4) / 2 = 0.275 - 0.5 = -0.225; residual = 0.225 / 0.35 = 9/14, quality control 5/14.
    """
    scores = pd.concat(
        [
            *_qfd_rows("base", [0.8, 0.6, 0.7, 0.5], {"p00": (0.6, 5), "p01": (0.5, 3), "p03": (0.4, 4)}),
            *_qfd_rows("sft", [0.4, 0.5, 0.3, 0.2], {"p00": (0.3, 8), "p02": (0.35, 6), "p03": (0.25, 10)}),
        ],
        ignore_index=True,
    )
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", parent="base")])
    unpaired = analyze(scores, None, graph, bootstrap=FAST).qfd.iloc[0]
    paired = analyze(scores, None, graph, bootstrap=FAST, qfd_pairing="paired").qfd.iloc[0]
    for row in (unpaired, paired):
        assert (row["reference"], row["checkpoint"], row["task"], row["metric"]) == ("base", "sft", "math", "sbert")
        assert (row["n_qualifying_reference"], row["n_qualifying_checkpoint"], row["n_qualifying_both"]) == (3, 3, 2)

    assert unpaired["pairing"] == "unpaired"
    assert (unpaired["n_prompts_reference"], unpaired["n_prompts_checkpoint"]) == (4, 4)
    assert (unpaired["d_all_reference"], unpaired["d_all_checkpoint"]) == pytest.approx((0.65, 0.35), abs=1e-12)
    assert (unpaired["d_correct_reference"], unpaired["d_correct_checkpoint"]) == pytest.approx((0.5, 0.3), abs=1e-12)
    assert unpaired["delta_all"] == pytest.approx(-0.30, abs=1e-12)
    assert unpaired["delta_correct"] == pytest.approx(-0.20, abs=1e-12)
    assert unpaired["residual_share"] == pytest.approx(2 / 3, abs=1e-12)
    assert unpaired["quality_control_share"] == pytest.approx(1 / 3, abs=1e-12)
    assert unpaired["mean_n_correct_reference"] == pytest.approx(4.0)  # (5 + 3 + 4) / 3
    assert unpaired["mean_n_correct_checkpoint"] == pytest.approx(8.0)  # (8 + 6 + 10) / 3
    assert unpaired["delta_all_ci_low"] <= -0.30 <= unpaired["delta_all_ci_high"] < 0

    assert paired["pairing"] == "paired"
    assert (paired["n_prompts_reference"], paired["n_prompts_checkpoint"]) == (2, 2)
    assert paired["delta_all"] == pytest.approx(-0.35, abs=1e-12)
    assert paired["delta_correct"] == pytest.approx(-0.225, abs=1e-12)
    assert paired["residual_share"] == pytest.approx(9 / 14, abs=1e-12)
    assert paired["quality_control_share"] == pytest.approx(5 / 14, abs=1e-12)
    assert paired["mean_n_correct_reference"] == pytest.approx(4.5)  # p00, p03: (5 + 4) / 2
    for row in (unpaired, paired):
        assert not row["share_outside_unit"] and row["note"] == ""


def test_unpaired_bootstrap_resamples_each_set_within_the_shared_index() -> None:
    """Constant values per checkpoint and set: every resample gives the same means, so the CI is the point."""
    prompts = [f"p{i:02d}" for i in range(N_PROMPTS)]
    qualifying_base = {p: (0.5, 4) for p in prompts[:40]}
    qualifying_sft = {p: (0.45, 4) for p in prompts[20:]}
    scores = pd.concat(
        [
            *_qfd_rows("base", [0.8] * N_PROMPTS, qualifying_base),
            *_qfd_rows("sft", [0.6] * N_PROMPTS, qualifying_sft),
        ],
        ignore_index=True,
    )
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", parent="base")])
    row = analyze(scores, None, graph, bootstrap=FAST).qfd.iloc[0]
    assert (row["n_qualifying_reference"], row["n_qualifying_checkpoint"], row["n_qualifying_both"]) == (40, 40, 20)
    assert row["delta_all"] == pytest.approx(-0.2) and row["delta_correct"] == pytest.approx(-0.05)
    assert (row["delta_correct_ci_low"], row["delta_correct_ci_high"]) == pytest.approx((-0.05, -0.05), abs=1e-12)
    assert row["residual_share"] == pytest.approx(0.25) and row["quality_control_share"] == pytest.approx(0.75)


def test_share_outside_unit_is_flagged() -> None:
    """base -> rl: D_all falls 0.6 -> 0.4 on every prompt (ΔD_all = -0.2) while D_correct rises 0.30 -> 0.35
    (ΔD_correct = +0.05): residual = 0.05 / -0.2 = -0.25, quality control = 1.25; flagged. base -> sft: D_correct
    falls more than D_all (-0.3 vs -0.2): residual 1.5, quality control -0.5; flagged too."""
    n = 6
    correct = {f"p{i:02d}": (0.30 + 0.01 * i, 4) for i in range(n)}
    scores = pd.concat(
        [
            *_qfd_rows("base", [0.6 + 0.01 * i for i in range(n)], correct),
            *_qfd_rows("rl", [0.4 + 0.01 * i for i in range(n)], {p: (v + 0.05, 3) for p, (v, _) in correct.items()}),
            *_qfd_rows("sft", [0.4 + 0.01 * i for i in range(n)], {p: (v - 0.3, 3) for p, (v, _) in correct.items()}),
            *_qfd_rows("ok", [0.4 + 0.01 * i for i in range(n)], {p: (v - 0.1, 3) for p, (v, _) in correct.items()}),
        ],
        ignore_index=True,
    )
    graph = LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("rl", "rl", parent="base"),
            CheckpointNode("sft", "sft", parent="base"),
            CheckpointNode("ok", "dpo", parent="base"),
        ]
    )
    qfd = analyze(scores, None, graph, bootstrap=FAST).qfd.set_index("checkpoint")
    rl = qfd.loc["rl"]
    assert rl["delta_all"] == pytest.approx(-0.2) and rl["delta_correct"] == pytest.approx(0.05)
    assert rl["residual_share"] == pytest.approx(-0.25) and rl["quality_control_share"] == pytest.approx(1.25)
    assert rl["share_outside_unit"] and "correct answers grew" in rl["note"]
    sft = qfd.loc["sft"]
    assert sft["residual_share"] == pytest.approx(1.5) and sft["quality_control_share"] == pytest.approx(-0.5)
    assert sft["share_outside_unit"] and "larger than" in sft["note"]
    ok = qfd.loc["ok"]
    assert ok["residual_share"] == pytest.approx(0.5) and not ok["share_outside_unit"] and ok["note"] == ""
    assert qfd["share_outside_unit"].dtype == bool


def test_no_think_variant_is_decomposed_against_its_parent() -> None:
    """base -> think (tree) and think -> think-nothink (variant): the variant is compared with think, not base.

    D_all: base 0.9 0.8 0.7 (0.8), think 0.5 0.4 0.3 (0.4), think-nothink 0.45 0.35 0.25 (0.35).
    D_correct: base 0.6 0.6 (p00, p01), think 0.3 0.3 0.3, think-nothink 0.3 0.2 (p00, p02).
    think -> think-nothink: ΔD_all = 0.35 - 0.4 = -0.05; ΔD_correct = 0.25 - 0.3 = -0.05; residual 1, qc 0.
    base -> think: ΔD_all = -0.4, ΔD_correct = 0.3 - 0.6 = -0.3, residual 0.75, quality control 0.25.
    """
    scores = pd.concat(
        [
            *_qfd_rows("base", [0.9, 0.8, 0.7], {"p00": (0.6, 4), "p01": (0.6, 4)}),
            *_qfd_rows("think", [0.5, 0.4, 0.3], {"p00": (0.3, 9), "p01": (0.3, 9), "p02": (0.3, 9)}),
            *_qfd_rows("think-nothink", [0.45, 0.35, 0.25], {"p00": (0.3, 5), "p02": (0.2, 7)}),
        ],
        ignore_index=True,
    )
    graph = LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("think", "rl", parent="base"),
            CheckpointNode("think-nothink", "rl", variant_of="think", thinking="suppressed"),
        ]
    )
    qfd = analyze(scores, None, graph, bootstrap=FAST).qfd
    assert list(zip(qfd["reference"], qfd["checkpoint"], qfd["comparison"], strict=True)) == [
        ("base", "think", "lineage"),
        ("think", "think-nothink", "variant"),
    ]
    lineage, variant = qfd.iloc[0], qfd.iloc[1]
    assert lineage["delta_all"] == pytest.approx(-0.4) and lineage["delta_correct"] == pytest.approx(-0.3)
    assert lineage["residual_share"] == pytest.approx(0.75) and lineage["quality_control_share"] == pytest.approx(0.25)
    assert variant["base"] == "base" and variant["stage"] == "rl"
    assert variant["delta_all"] == pytest.approx(-0.05) and variant["delta_correct"] == pytest.approx(-0.05)
    assert (variant["n_qualifying_reference"], variant["n_qualifying_checkpoint"]) == (3, 2)
    assert variant["d_correct_checkpoint"] == pytest.approx(0.25)
    assert variant["residual_share"] == pytest.approx(1.0) and variant["quality_control_share"] == pytest.approx(0.0)
    assert variant["mean_n_correct_checkpoint"] == pytest.approx(6.0)


def test_vendi_on_the_correct_subset_is_decomposed_and_marked_k_dependent() -> None:
    correct = {f"p{i:02d}": (2.0 + 0.1 * i, 4) for i in range(4)}
    scores = pd.concat(
        [
            *_qfd_rows("base", [3.4, 3.5, 3.3, 3.6], correct, metric="vendi"),
            *_qfd_rows("sft", [1.8, 1.9, 1.7, 2.0], {p: (v - 0.4, 6) for p, (v, _) in correct.items()}, metric="vendi"),
            *_qfd_rows("base", [0.5, 0.5, 0.5, 0.5], {p: (0.4, 4) for p in correct}),
            *_qfd_rows("sft", [0.3, 0.3, 0.3, 0.3], {p: (0.3, 6) for p in correct}),
        ],
        ignore_index=True,
    )
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", parent="base")])
    qfd = analyze(scores, None, graph, bootstrap=FAST).qfd.set_index("metric")
    assert set(qfd.index) == {"sbert", "vendi"}
    vendi = qfd.loc["vendi"]
    assert vendi["delta_all"] == pytest.approx(-1.6) and vendi["delta_correct"] == pytest.approx(-0.4)
    assert vendi["residual_share"] == pytest.approx(0.25)
    assert "K-dependent" in vendi["note"] and "K-dependent" not in qfd.loc["sbert", "note"]


def test_qfd_only_for_verifiable_tasks_and_exact_zero_change() -> None:
    base = np.linspace(0.5, 0.9, N_PROMPTS)
    scores = pd.concat(
        [
            _rows("base", base),
            _rows("flat", base.copy()),
            _rows("base", base - 0.1, subset="correct"),
            _rows("flat", base - 0.2, subset="correct"),
            _rows("base", base, task="chat"),
            _rows("flat", base - 0.2, task="chat"),
        ],
        ignore_index=True,
    )
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("flat", "sft", parent="base")])
    result = analyze(scores, None, graph, bootstrap=FAST)
    assert list(result.qfd["task"]) == ["math"]
    row = result.qfd.iloc[0]
    assert row["delta_all"] == 0 and np.isnan(row["residual_share"])
    assert "delta_all is 0" in row["note"]
    assert result.settings["verifiable"] == [["math", "sbert"]]


def _verdicts(checkpoint: str, correct: list[list[bool]], task: str = "math") -> pd.DataFrame:
    rows = [
        {
            "checkpoint": checkpoint,
            "task": task,
            "prompt_id": f"p{p:02d}",
            "sample_index": s,
            "correct": ok,
            "extracted": str(int(ok)),
        }
        for p, samples in enumerate(correct)
        for s, ok in enumerate(samples)
    ]
    return pd.DataFrame(rows)


def test_thinking_ablation() -> None:
    graph = LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("think", "rl", parent="base"),
            CheckpointNode("think-off", "rl", variant_of="think", thinking="suppressed"),
        ]
    )
    rng = np.random.default_rng(2)
    effect = rng.normal(0, 0.05, N_PROMPTS)
    scores = pd.concat(
        [
            _rows("base", 0.8 + effect),
            _rows("think", 0.5 + effect + rng.normal(0, 0.01, N_PROMPTS)),
            _rows("think-off", 0.6 + effect + rng.normal(0, 0.01, N_PROMPTS), prompts=None).iloc[:-3],
        ],
        ignore_index=True,
    )
    verdicts = pd.concat(
        [
            _verdicts("think", [[True, True, True, False]] * N_PROMPTS),
            _verdicts("think-off", [[False, True, True, False]] * N_PROMPTS),
        ],
        ignore_index=True,
    )
    result = analyze(scores, verdicts, graph, bootstrap=FAST)
    row = result.thinking.iloc[0]
    assert (row["checkpoint"], row["variant"]) == ("think", "think-off")
    assert row["n_prompts"] == N_PROMPTS - 3 and row["n_dropped"] == 3
    on, off = _values(scores, "think").iloc[:-3], _values(scores, "think-off")
    assert row["delta"] == pytest.approx(off.mean() - on.mean(), abs=1e-12)
    assert row["delta"] == pytest.approx(0.1, abs=0.01) and row["significant"]
    assert (row["accuracy_first_on"], row["accuracy_first_suppressed"]) == (1.0, 0.0)
    assert (row["accuracy_on"], row["accuracy_suppressed"]) == (0.75, 0.5)
    assert row["accuracy_delta"] == pytest.approx(-0.25, abs=1e-12)
    assert row["n_prompts_accuracy"] == N_PROMPTS
    # The variant is not a tree edge but it has a base.
    assert set(result.edges["child"]) == {"think"}
    assert result.retained.set_index("checkpoint").loc["think-off", "base"] == "base"


def test_curves_are_monotone_and_passk_matches_hand_values() -> None:
    rng = np.random.default_rng(3)
    levels = {"k=2": 0.30, "k=4": 0.50, "k=8": 0.60}
    frames = [
        _rows("base", value + rng.normal(0, 0.01, N_PROMPTS), subset=subset, n_outputs=int(subset[2:]))
        for subset, value in levels.items()
    ]
    frames.append(_rows("base", 0.70 + rng.normal(0, 0.01, N_PROMPTS), n_outputs=16))
    # A K-dependent metric subsampled below K on some prompts: those are not put at k = K.
    vendi = np.full(N_PROMPTS, 9.0)
    vendi[:10] = 3.0
    frames.append(_rows("base", vendi, metric="vendi", n_outputs=16).assign(n_outputs=[5] * 10 + [16] * 50))
    scores = pd.concat(frames, ignore_index=True)
    n_correct = rng.integers(0, 17, N_PROMPTS)
    verdicts = _verdicts("base", [[s < c for s in range(16)] for c in n_correct])
    graph = LineageGraph([CheckpointNode("base", "base")])
    result = analyze(scores, verdicts, graph, bootstrap=FAST)

    curve = result.curves[result.curves.metric == "sbert"]
    assert list(curve["k"]) == [2, 4, 8, 16] and list(curve["subset"]) == ["k=2", "k=4", "k=8", "all"]
    assert curve["mean"].is_monotonic_increasing
    assert (curve["ci_low"] < curve["mean"]).all() and (curve["mean"] < curve["ci_high"]).all()
    vendi_curve = result.curves[result.curves.metric == "vendi"].iloc[0]
    assert (vendi_curve["k"], vendi_curve["n_prompts"], vendi_curve["mean"]) == (16, 50, 9.0)

    passk = result.passk[result.passk.metric == "sbert"].set_index("k")
    assert list(passk.index) == [1, 2, 4, 5, 8, 10, 16]  # the study's levels <= K, and K
    for k in passk.index:
        hand = np.mean([1 - comb(16 - c, k) / comb(16, k) for c in n_correct])
        assert passk.loc[k, "pass_at_k"] == pytest.approx(hand, abs=1e-12)
        assert passk.loc[k, "n_prompts"] == N_PROMPTS and passk.loc[k, "n_samples"] == 16
    assert passk.loc[1, "pass_at_k"] == pytest.approx(n_correct.mean() / 16, abs=1e-12)
    assert passk.loc[16, "pass_at_k"] == pytest.approx(np.mean(n_correct > 0), abs=1e-12)
    assert passk.loc[4, "diversity_k"] == pytest.approx(curve.set_index("k").loc[4, "mean"], abs=1e-12)
    assert np.isnan(passk.loc[1, "diversity_k"]) and np.isnan(passk.loc[5, "diversity_k"])  # no curve point there
    assert (passk["diversity_all"] == result.checkpoint_means.set_index("metric").loc["sbert", "mean"]).all()


def test_passk_levels_for_k_6() -> None:
    """K = 6: pass@k at 1, 2, 4, 5 (the study's levels up to K) and 6 (K itself), as ``divtrace verify`` reports."""
    n_correct = [0, 1, 3, 6]
    verdicts = _verdicts("base", [[s < c for s in range(6)] for c in n_correct])
    scores = _rows("base", np.full(4, 0.5), n_outputs=6)
    result = analyze(scores, verdicts, LineageGraph([CheckpointNode("base", "base")]), bootstrap=FAST)
    passk = result.passk.set_index("k")
    assert list(passk.index) == [1, 2, 4, 5, 6]
    for k in passk.index:
        hand = np.mean([1 - comb(6 - c, k) / comb(6, k) for c in n_correct])
        assert passk.loc[k, "pass_at_k"] == pytest.approx(hand, abs=1e-12)
    # k = 5: prompts (0, 1, 3, 6 correct) give 0, 5/6, 1, 1 -> 0.708333...
    assert passk.loc[5, "pass_at_k"] == pytest.approx((0 + 5 / 6 + 1 + 1) / 4, abs=1e-12)


def test_pass_at_k_edge_cases() -> None:
    values = pass_at_k_per_prompt(np.array([4, 4, 4, 2]), np.array([0, 4, 1, 1]), 3)
    assert values[:3] == pytest.approx([0.0, 1.0, 1 - comb(3, 3) / comb(4, 3)], abs=1e-15)
    assert np.isnan(values[3])  # fewer samples than k


def test_write_analysis_round_trips_every_table(tmp_path: Path) -> None:
    scores = pd.concat([_lineage_scores(), _qfd_scores().assign(task="gsm")], ignore_index=True)
    graph = LineageGraph([*_graph().nodes.values(), *list(_qfd_graph().nodes.values())[1:]])
    verdicts = _verdicts("base", [[True, False]] * N_PROMPTS)
    result = analyze(scores, verdicts, graph, bootstrap=FAST)
    written = write_analysis(result, tmp_path)
    names = list(result.tables())
    assert names == [
        "checkpoint_means",
        "retained",
        "edges",
        "collapse_sites",
        "qfd",
        "thinking",
        "curves",
        "passk",
        "headline",
        "table1",
        "diversity_quality",
        "quality_edges",
        "homogenization",
        "sweep",
        "recovery",
    ]
    on_request = ("homogenization", "sweep", "recovery")  # written only when asked for
    assert len(written) == 2 * (len(names) - len(on_request)) + 1
    assert not any((tmp_path / f"{name}.csv").exists() for name in on_request)
    for name, table in result.tables().items():
        if name in on_request:
            continue
        from_parquet = pd.read_parquet(tmp_path / f"{name}.parquet")
        from_csv = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(from_parquet.columns) == list(from_csv.columns) == list(table.columns)
        assert len(from_parquet) == len(from_csv) == len(table)
        pd.testing.assert_frame_equal(from_parquet, table, check_dtype=False)
        if name not in ("thinking", "quality_edges"):  # verdicts of base only: no edge has a quality at both ends
            assert len(table) > 0, name
    assert not list(tmp_path.glob(".*.tmp"))
    settings = (tmp_path / "analysis_settings.json").read_text()
    assert '"seed": 1234' in settings


def test_deterministic_and_seed_recorded() -> None:
    scores = _lineage_scores()
    first = analyze(scores, None, _graph(), bootstrap=FAST)
    again = analyze(scores.sample(frac=1, random_state=5), None, _graph(), bootstrap=FAST)
    for name, table in first.tables().items():
        pd.testing.assert_frame_equal(table, again.tables()[name], obj=name)
    other = analyze(scores, None, _graph(), bootstrap=BootstrapSettings(resamples=400, seed=7))
    assert other.settings["bootstrap"]["seed"] == 7 and first.settings["bootstrap"]["seed"] == 1234
    assert not np.allclose(other.edges["delta_ci_low"], first.edges["delta_ci_low"])
    np.testing.assert_array_equal(other.edges["delta"], first.edges["delta"])


def test_bad_input_is_named() -> None:
    scores = _lineage_scores()
    with pytest.raises(DivtraceError, match="duplicate"):
        analyze(pd.concat([scores, scores.iloc[:1]]), None, _graph())
    with pytest.raises(DivtraceError, match="n_outputs"):
        analyze(scores.drop(columns="n_outputs"), None, _graph())


# ----- Table 1: the headline averaged over tasks -----

TABLE1_VALUES = {
    # checkpoint: {task: per-prompt SBERT of p00, p01, p02}
    "base": {"t1": [0.6, 0.5, 0.4], "t2": [0.2, 0.2, 0.2]},
    "sft": {"t1": [0.3, 0.3, 0.3], "t2": [0.15, 0.1, 0.05]},
    "dpo": {"t1": [0.2, 0.3, 0.25], "t2": [0.1, 0.2, 0.15]},
    "rz-a": {"t1": [0.5, 0.4, 0.3], "t2": [0.2, 0.1, 0.15]},
    "rz-b": {"t1": [0.6, 0.45, 0.45], "t2": [0.1, 0.1, 0.1]},
}


def _table1_case() -> tuple[pd.DataFrame, LineageGraph]:
    scores = pd.concat(
        [
            _rows(name, np.array(values), task=task)
            for name, tasks in TABLE1_VALUES.items()
            for task, values in tasks.items()
        ],
        ignore_index=True,
    )
    graph = LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("sft", "sft", parent="base"),
            CheckpointNode("dpo", "dpo", parent="sft"),
            CheckpointNode("rz-a", "rl-zero", parent="base"),
            CheckpointNode("rz-b", "rl-zero", parent="base"),
        ]
    )
    return scores, graph


def test_table1_row_by_hand() -> None:
    """Table 1 of base -> sft -> dpo over 2 tasks x 3 prompts (values in TABLE1_VALUES), by hand.

    Task means:  t1: base 0.5, sft 0.3, dpo 0.25        t2: base 0.2, sft 0.1, dpo 0.15
    % of base:   t1: sft 100 (0.3 - 0.5) / 0.5 = -40,  dpo 100 (0.25 - 0.3) / 0.5 = -10,  retained 50
                 t2: sft 100 (0.1 - 0.2) / 0.2 = -50,  dpo 100 (0.15 - 0.1) / 0.2 = +25,  retained 75
    Table 1 (mean over the 2 tasks): sft -45.0, dpo +7.5, retained 62.5 (= 100 - 45 + 7.5).
    Pooling the prompts of both tasks instead would give 100 * 0.2 / 0.35 = 57.1% retained: not the paper's mean.

    RL-Zero group (rz-a, rz-b, both stage rl-zero from base): retained t1 rz-a 0.4 / 0.5 = 80, rz-b 0.5 / 0.5 = 100;
    t2 rz-a 0.15 / 0.2 = 75, rz-b 0.1 / 0.2 = 50. Members: rz-a (80 + 75) / 2 = 77.5, rz-b (100 + 50) / 2 = 75.
    Group: per task (80 + 100) / 2 = 90 and (75 + 50) / 2 = 62.5, mean 76.25 (change -23.75).
    """
    scores, graph = _table1_case()
    result = analyze(scores, None, graph, bootstrap=FAST)
    table = result.table1[result.table1.metric == "sbert"]
    main = table[table.lineage == "dpo"].set_index("step")
    assert list(main["stage"]) == ["sft", "dpo"] and list(main["child"]) == ["sft", "dpo"]
    assert (main["kind"] == "lineage").all() and (main["path"] == "base → sft → dpo").all()
    assert (main["n_tasks"] == 2).all() and (main["tasks"] == "t1, t2").all() and (main["n_prompts"] == 6).all()
    assert main.loc[1, "change_pct_base"] == pytest.approx(-45.0, abs=1e-9)
    assert main.loc[2, "change_pct_base"] == pytest.approx(7.5, abs=1e-9)
    assert list(main["retained_pct"]) == pytest.approx([62.5, 62.5], abs=1e-9)  # repeated on each step
    for column in ("change_pct_base", "retained_pct"):
        assert (main[f"{column}_ci_low"] <= main[column] + 1e-9).all()
        assert (main[column] <= main[f"{column}_ci_high"] + 1e-9).all()
    assert main["paper_change_pct_base"].isna().all() and main["paper_retained_pct"].isna().all()

    rows = table.set_index("lineage")
    assert rows.loc["rz-a", "retained_pct"] == pytest.approx(77.5, abs=1e-9)
    assert rows.loc["rz-b", "retained_pct"] == pytest.approx(75.0, abs=1e-9)
    group = rows.loc["rl-zero"]
    assert (group["kind"], group["members"], group["stage"], group["step"]) == ("group", "rz-a, rz-b", "rl-zero", 1)
    assert group["path"] == "base → {rz-a, rz-b}"
    assert group["retained_pct"] == pytest.approx(76.25, abs=1e-9)
    assert group["change_pct_base"] == pytest.approx(-23.75, abs=1e-9)
    assert result.settings["table1"]["rows"]["rl-zero"] == {"kind": "group", "checkpoints": ["base", "rz-a", "rz-b"]}


def test_table1_bootstrap_is_stratified_by_task() -> None:
    """t2 is constant within each checkpoint, so every resample of t2 gives its point (sft -50, dpo +25): with
    prompts resampled within each task and t1 drawn first, Table 1's CI over (t1, t2) is exactly
    (t1's CI + t2's point) / 2. Pooled resampling across tasks would change the tasks' prompt counts and break it."""
    scores, graph = _table1_case()
    scores = scores[scores.checkpoint.isin(["base", "sft", "dpo"])].copy()
    t2 = scores.task == "t2"
    for name, level in (("base", 0.2), ("sft", 0.1), ("dpo", 0.15)):
        scores.loc[t2 & (scores.checkpoint == name), "value"] = level
    graph = LineageGraph(list(graph.nodes.values())[:3])
    both = analyze(scores, None, graph, bootstrap=FAST).table1
    alone = analyze(scores[~t2], None, graph, bootstrap=FAST).table1
    both, alone = both.set_index("step"), alone.set_index("step")
    t2_points = {1: -50.0, 2: 25.0}
    for step, point in t2_points.items():
        for end in ("ci_low", "ci_high"):
            column = f"change_pct_base_{end}"
            assert both.loc[step, column] == pytest.approx((alone.loc[step, column] + point) / 2, abs=1e-9)
    assert alone.loc[1, "change_pct_base_ci_low"] < alone.loc[1, "change_pct_base_ci_high"]


def test_table1_shows_the_paper_row_for_the_olmo3_preset() -> None:
    from divtrace.study import olmo3_7b_study

    graph = olmo3_7b_study().graph()
    levels = {name: 0.3 - 0.01 * i for i, name in enumerate(graph.nodes)}
    scores = pd.concat(
        [_rows(name, np.full(3, level), task=task) for name, level in levels.items() for task in ("t1", "t2")],
        ignore_index=True,
    )
    result = analyze(scores, None, graph, bootstrap=FAST, study_name="olmo3-7b")
    table = result.table1
    assert "Karouzos" in result.settings["table1"]["paper"]
    sbert = table[table.metric == "sbert"]
    think = sbert[sbert.lineage == "think"].set_index("step")
    assert list(think["paper_change_pct_base"]) == [-62.0, -4.0, 4.0] and (think["paper_retained_pct"] == 38).all()
    instruct = sbert[sbert.lineage == "instruct"].set_index("step")
    assert list(instruct["paper_change_pct_base"]) == [-38.0, -23.0, -5.0]
    assert (instruct["paper_retained_pct"] == 34).all()
    group = sbert[sbert.lineage == "rl-zero"].iloc[0]
    assert group["kind"] == "group" and group["paper_retained_pct"] == 93 and np.isnan(group["paper_change_pct_base"])
    assert group["members"].split(", ") == [
        "rl-zero-math", "rl-zero-code", "rl-zero-if", "rl-zero-general", "rl-zero-3.1-math", "rl-zero-3.1-code",
    ]  # fmt: skip
    assert sbert[sbert.lineage == "rl-zero-math"]["paper_retained_pct"].isna().all()
    # The variants (thinking suppressed) are not lineages; another study name gets no paper row.
    assert not table.lineage.str.contains("nothink").any()
    other = analyze(scores, None, graph, bootstrap=FAST, study_name="my-study").table1
    assert other["paper_retained_pct"].isna().all()


def test_duplicate_rows_are_refused_naming_the_first_repeat() -> None:
    scores = _lineage_scores()
    with pytest.raises(DivtraceError, match=r"scores table has 1 duplicate row\(s\), e\.g\. checkpoint '.+', task "
                       r"'.+', prompt '.+', metric '.+', subset 'all'"):  # fmt: skip
        analyze(pd.concat([scores, scores.iloc[:1]], ignore_index=True), None, _graph())
    verdict = {"checkpoint": "base", "task": "t", "prompt_id": "p0", "sample_index": 3, "correct": True}
    with pytest.raises(DivtraceError, match=r"verdicts table has 1 duplicate sample\(s\), e\.g\. checkpoint 'base', "
                       r"task 't', prompt 'p0', sample 3"):  # fmt: skip
        analyze(scores, pd.DataFrame([verdict, verdict]), _graph())


# ----- Issue 20: a collapse site is a significant loss; one sign; every QFD share shown -----


def test_collapse_step_is_the_largest_significant_loss() -> None:
    """think (the paper's row): sft -62 [-65, -59], dpo -4 [-9, +1], rl +4 [-1, +9]: the site is sft. A larger
    loss whose CI includes 0 is not a site; a smaller significant one is. A gain never is one."""
    assert collapse_step([-62.0, -4.0, 4.0], [-65.0, -9.0, -1.0], [-59.0, 1.0, 9.0]) == 0
    assert collapse_step([-30.0, -10.0], [-70.0, -12.0], [10.0, -8.0]) == 1
    assert collapse_step([12.3], [4.8], [25.3]) is None  # quickstart open_ended EAD: a gain
    assert collapse_step([-3.0, 2.0], [-8.0, -1.0], [2.0, 5.0]) is None  # nothing significant
    assert collapse_step([-5.0, -5.0], [-6.0, -6.0], [-4.0, -4.0]) == 0  # a tie: the first
    assert collapse_step([-5.0], [float("nan")], [float("nan")]) is None  # no CI: not significant
    with pytest.raises(ValueError, match="CI ends"):
        collapse_step([-1.0, -2.0], [-3.0], [0.0])


def _gain_scores(levels: dict[str, float], noise: float = 0.01, seed: int = 7) -> pd.DataFrame:
    """SBERT per prompt: a shared prompt effect plus independent noise around each checkpoint's level."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 0.03, N_PROMPTS)
    return pd.concat(
        [_rows(name, level + effect + rng.normal(0, noise, N_PROMPTS)) for name, level in levels.items()],
        ignore_index=True,
    )


def test_an_edge_that_gained_is_never_a_collapse_site() -> None:
    """The quickstart case: base -> instruct gained diversity (0.50 -> 0.56, +12%); before, that edge was listed
    as the lineage's collapse site (the smallest change when nothing was lost)."""
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("instruct", "instruct", parent="base")])
    result = analyze(_gain_scores({"base": 0.50, "instruct": 0.56}), None, graph, bootstrap=FAST)
    edge = result.edges.iloc[0]
    assert edge["delta_pct_base"] == pytest.approx(12.0, abs=1.0) and edge["delta_pct_base_ci_low"] > 0
    site = result.collapse_sites.iloc[0]
    assert site["status"] == GAINED and site["n_significant_gains"] == 1 and site["n_significant_losses"] == 0
    assert pd.isna(site["parent"]) and pd.isna(site["child"]) and np.isnan(site["delta_pct_base"])
    assert np.isnan(site["loss_share"]) and pd.isna(site["n_prompts"])
    assert not result.headline["is_collapse_site"].any()
    assert result.headline["change_pct_base"].iloc[0] == pytest.approx(edge["delta_pct_base"])  # signed: a gain > 0
    table1 = result.table1.iloc[0]
    assert table1["significant"] and not table1["is_collapse_site"] and table1["change_pct_base"] > 0


def test_a_loss_whose_ci_includes_zero_is_not_a_site() -> None:
    """base -> sft -> dpo: sft's larger drop is noise (CI includes 0), dpo's smaller one is clear: dpo is the site;
    and base -> flat, with no significant change at all, has none."""
    graph = LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("sft", "sft", parent="base"),
            CheckpointNode("dpo", "dpo", parent="sft"),
            CheckpointNode("flat", "rl-zero", parent="base"),
        ]
    )
    rng = np.random.default_rng(11)
    effect = rng.normal(0, 0.03, N_PROMPTS)
    sft = 0.58 + effect + rng.normal(0, 0.30, N_PROMPTS)  # -0.02 under noise of 0.3: its CI includes 0
    scores = pd.concat(
        [
            _rows("base", 0.60 + effect + rng.normal(0, 0.002, N_PROMPTS)),
            _rows("sft", sft),
            _rows("dpo", sft - 0.06),  # a smaller loss, but the same on every prompt: certain
            _rows("flat", 0.60 + effect + rng.normal(0, 0.002, N_PROMPTS)),
        ],
        ignore_index=True,
    )
    result = analyze(scores, None, graph, bootstrap=FAST)
    edges = result.edges.set_index("child")
    assert edges.loc["sft", "delta_ci_low"] < 0 < edges.loc["sft", "delta_ci_high"]
    assert edges.loc["dpo", "delta_ci_high"] < 0
    sites = result.collapse_sites.set_index("lineage")
    assert sites.loc["dpo", "status"] == SITE and sites.loc["dpo", "child"] == "dpo"
    assert sites.loc["flat", "status"] == NO_SIGNIFICANT_LOSS and pd.isna(sites.loc["flat", "child"])
    headline = result.headline[result.headline.lineage == "dpo"]
    assert list(headline["is_collapse_site"]) == [False, True]


def _three_checkpoint_qfd(seed: int = 5) -> pd.DataFrame:
    """base -> sft -> rl on three verifiable tasks, 8 prompts each: D_all barely moves on t1 and t2 (noise 0.05
    around a 0.01 change) and falls clearly on t3; D_correct falls by half of D_all's fall, plus noise."""
    rng = np.random.default_rng(seed)
    frames = []
    shifts = {"t1": (0.0, 0.01, 0.0), "t2": (0.0, -0.01, 0.01), "t3": (0.0, -0.2, -0.3)}
    for task, (base, sft, rl) in shifts.items():
        for name, shift in (("base", base), ("sft", sft), ("rl", rl)):
            all_values = 0.6 + shift + rng.normal(0, 0.05, 8)
            correct = 0.5 + shift / 2 + rng.normal(0, 0.05, 8)
            frames.append(_rows(name, all_values, task=task))
            frames.append(_rows(name, correct, task=task, subset="correct", n_outputs=4))
    return pd.concat(frames, ignore_index=True)


def test_qfd_shares_are_shown_and_flagged_when_delta_all_ci_includes_zero() -> None:
    """The small 3-checkpoint case of the issue: 6 rows (base -> sft, base -> rl on t1, t2, t3); 4 have a ΔD_all
    whose CI includes 0. Before, those 4 came out empty (NaN); now every share is given with its CI, and flagged."""
    graph = LineageGraph(
        [CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base"), CheckpointNode("rl", "rl", "sft")]
    )
    qfd = analyze(_three_checkpoint_qfd(), None, graph, bootstrap=FAST).qfd
    assert len(qfd) == 6
    flagged = qfd["delta_all_ci_includes_zero"]
    assert flagged.dtype == bool and flagged.sum() == 4
    assert list(qfd.loc[flagged, "task"]) == ["t1", "t1", "t2", "t2"]
    for column in ("residual_share", "quality_control_share"):
        for end in ("", "_ci_low", "_ci_high"):
            assert np.isfinite(qfd[f"{column}{end}"]).all(), f"{column}{end}"
    assert np.allclose(qfd["residual_share"] + qfd["quality_control_share"], 1.0)
    assert (
        (qfd["residual_share_ci_low"] <= qfd["residual_share"])
        & (qfd["residual_share"] <= qfd["residual_share_ci_high"])
    ).all()
    assert not qfd["note"].str.contains("undefined").any()
    for row in qfd.itertuples():
        assert row.delta_all_ci_includes_zero == (row.delta_all_ci_low <= 0 <= row.delta_all_ci_high)


def test_one_sign_and_the_site_rule_are_recorded_in_the_settings(
    lineage_result: tuple[pd.DataFrame, AnalysisResult],
) -> None:
    _, result = lineage_result
    assert result.settings["sign_convention"] == SIGN_CONVENTION and "negative = diversity lost" in SIGN_CONVENTION
    assert "CI includes 0" in result.settings["qfd"]["delta_all_ci_includes_zero"]
    # One column name and one sign for "change as % of base" in the per-task and averaged Table 1.
    assert "change_pct_base" in result.headline.columns and "loss_pct_base" not in result.headline.columns
    rl = result.table1[(result.table1.lineage == "rl") & (result.table1.metric == "sbert")]
    assert list(rl["is_collapse_site"]) == [False, True, False] and rl["significant"].iloc[1]
    assert (rl["change_pct_base"] < 0).all()
