"""The analyze stage on constructed scores whose true diversity changes are known."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divtrace.analysis import AnalysisResult, analyze, headline_table, pass_at_k, write_analysis
from divtrace.errors import DivtraceError
from divtrace.lineage import CheckpointNode, LineageGraph
from divtrace.scoring.bootstrap import BootstrapSettings, bootstrap_mean_ci

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
        assert main["delta_ci_high"] < 0 and main["significant"] and main["is_loss"]
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


def test_checkpoint_means_match_the_scoring_bootstrap(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    scores, result = lineage_result
    means = result.checkpoint_means.set_index(["checkpoint", "metric"])
    values = _values(scores, "dpo").to_numpy()
    row = means.loc[("dpo", "sbert")]
    assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
    assert row["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
    # The vectorised paired helper resamples exactly like one scipy call per group.
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_mean_ci(values, FAST), abs=1e-12)
    assert row["stage"] == "dpo" and row["n_prompts"] == N_PROMPTS and row["mean_n_outputs"] == 16


def test_headline_is_table_one(lineage_result: tuple[pd.DataFrame, AnalysisResult]) -> None:
    _, result = lineage_result
    table = result.headline[(result.headline.lineage == "rl") & (result.headline.metric == "sbert")]
    assert list(table["stage"]) == ["sft", "dpo", "rl"] and list(table["step"]) == [1, 2, 3]
    assert list(table["is_collapse_site"]) == [False, True, False]
    # Losses along the path add up to what the leaf lost: 100 - retained %.
    assert table["loss_pct_base"].sum() == pytest.approx(100 - table["retained_pct"].iloc[0], abs=1e-9)
    assert table["retained_pct"].iloc[0] == pytest.approx(50, abs=2)
    assert (table["loss_pct_base_ci_low"] <= table["loss_pct_base"]).all()
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


def test_quality_filtered_decomposition() -> None:
    scores = _qfd_scores()
    result = analyze(scores, None, _qfd_graph(), bootstrap=FAST)
    qfd = result.qfd.set_index("checkpoint")
    assert set(qfd.index) == {"half", "qc", "flat"} and (qfd["base"] == "base").all()

    half = qfd.loc["half"]
    assert half["n_prompts_total"] == N_PROMPTS and half["n_prompts_unpaired"] == 0
    assert (half["n_valid_base"], half["n_valid_checkpoint"], half["n_valid_both"]) == (56, 54, 50)
    assert half["n_dropped"] == 10
    valid = [f"p{i:02d}" for i in range(10, N_PROMPTS)]
    hand_all = _values(scores, "half")[valid].mean() - _values(scores, "base")[valid].mean()
    hand_correct = (
        _values(scores, "half", subset="correct")[valid].mean()
        - _values(scores, "base", subset="correct")[valid].mean()
    )
    assert half["delta_all"] == pytest.approx(hand_all, abs=1e-12)
    assert half["delta_correct"] == pytest.approx(hand_correct, abs=1e-12)
    assert half["delta_all_all_prompts"] < half["delta_all"] - 0.05  # the dropped prompts were not used
    assert half["residual_share"] == pytest.approx(0.5, abs=0.03)
    assert half["quality_control_share"] == pytest.approx(1 - half["residual_share"], abs=1e-12)
    assert half["residual_share_ci_low"] < half["residual_share"] < half["residual_share_ci_high"]
    assert half["delta_all_ci_high"] < 0 and half["note"] == ""
    assert half["mean_n_correct_base"] == 6 and half["mean_n_correct_checkpoint"] == 5

    qc = qfd.loc["qc"]
    assert qc["n_valid_both"] == 56 and qc["n_dropped"] == 4
    assert qc["delta_correct_ci_low"] < 0 < qc["delta_correct_ci_high"]
    assert qc["residual_share"] == pytest.approx(0.0, abs=0.03)
    assert qc["quality_control_share"] == pytest.approx(1.0, abs=0.03)

    flat = qfd.loc["flat"]
    assert flat["delta_all_ci_low"] < 0 < flat["delta_all_ci_high"]
    assert np.isnan(flat["residual_share"]) and np.isnan(flat["quality_control_share"])
    assert "CI includes 0" in flat["note"]


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
    assert list(passk.index) == [1, 2, 4, 8, 16]
    for k in passk.index:
        hand = np.mean([1 - comb(16 - c, k) / comb(16, k) for c in n_correct])
        assert passk.loc[k, "pass_at_k"] == pytest.approx(hand, abs=1e-12)
        assert passk.loc[k, "n_prompts"] == N_PROMPTS and passk.loc[k, "n_samples"] == 16
    assert passk.loc[1, "pass_at_k"] == pytest.approx(n_correct.mean() / 16, abs=1e-12)
    assert passk.loc[16, "pass_at_k"] == pytest.approx(np.mean(n_correct > 0), abs=1e-12)
    assert passk.loc[4, "diversity_k"] == pytest.approx(curve.set_index("k").loc[4, "mean"], abs=1e-12)
    assert np.isnan(passk.loc[1, "diversity_k"])
    assert (passk["diversity_all"] == result.checkpoint_means.set_index("metric").loc["sbert", "mean"]).all()


def test_pass_at_k_edge_cases() -> None:
    values = pass_at_k(np.array([4, 4, 4, 2]), np.array([0, 4, 1, 1]), 3)
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
    ]
    assert len(written) == 2 * len(names) + 1
    for name, table in result.tables().items():
        from_parquet = pd.read_parquet(tmp_path / f"{name}.parquet")
        from_csv = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(from_parquet.columns) == list(from_csv.columns) == list(table.columns)
        assert len(from_parquet) == len(from_csv) == len(table)
        pd.testing.assert_frame_equal(from_parquet, table, check_dtype=False)
        if name != "thinking":
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
