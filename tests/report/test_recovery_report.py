"""The "Can sampling undo it? The recovery frontier" section of index.html and its lines in summary.md: there, with a
plot per task and the recovery table, when the study has a sweep; absent otherwise (also for an analysis directory
written without the sweep's tables).

A constructed study: base -> sft -> dpo and base -> rlzero, sampled at temperature 0.6 without min-p; sft, dpo and
rlzero swept over temperature x min-p. Every prompt's diversity is a checkpoint's level times a factor of the setting
(the factors average to 1 over the prompts), so each mean is known: the base is at 0.800 (sbert), sft reaches it first
at temperature 1.4 without min-p (0.900), dpo never does (at most 0.720), rlzero already does at the study's setting
(0.850). ``arith`` has verdicts (pass@1 falls from 75% to 25% at temperature 1.4); ``poems`` has no quality.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from divtrace.analysis import AnalysisResult, analyze, read_analysis, write_analysis
from divtrace.analysis.sweep import SweepInputs
from divtrace.report import write_report
from divtrace.report.study_info import StudyInfo
from divtrace.stats import BootstrapSettings
from divtrace.study import SamplingSpec
from divtrace.study.lineage import CheckpointNode, LineageGraph
from divtrace.study.sweep import SweepCondition, SweepSpec, sweep_conditions
from tests.report.test_report import parse

FAST = BootstrapSettings(resamples=200)
MINUS = "\N{MINUS SIGN}"
N_PROMPTS = 6
K = 4
TASKS = ("arith", "poems")
#: Each metric's scale of the diversity levels below.
METRICS = {"sbert": 1.0, "ead": 0.6}
#: Each checkpoint's sbert diversity at the study's setting.
LEVEL = {"base": 0.8, "sft": 0.5, "dpo": 0.4, "rlzero": 0.85}
#: Each checkpoint's correct samples (of K) per arith prompt at the study's setting.
CORRECT = {"base": 2, "sft": 3, "dpo": 3, "rlzero": 2}
SAMPLING = SamplingSpec(k=K, temperature=0.6)


def graph() -> LineageGraph:
    return LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("sft", "sft", "base"),
            CheckpointNode("dpo", "dpo", "sft"),
            CheckpointNode("rlzero", "rl-zero", "base"),
        ]
    )


def _factor(condition: SweepCondition) -> float:
    """How much a setting multiplies a checkpoint's diversity: +100% per unit of temperature above 0.6, -5% with
    min-p."""
    values = condition.values()
    return (1 + (float(values["temperature"] or 0.6) - 0.6)) * (0.95 if values.get("min_p") else 1.0)


def _correct(condition: SweepCondition) -> int:
    """Correct samples per prompt at a setting: one fewer per 0.4 of temperature above 0.6."""
    return max(CORRECT[condition.checkpoint] - round((float(condition.values()["temperature"] or 0.6) - 0.6) / 0.4), 0)


def _scores(name: str, level: float) -> list[dict[str, object]]:
    return [
        {
            "checkpoint": name, "task": task, "prompt_id": f"p{p}", "metric": metric, "subset": "all",
            "value": scale * level * (1 + 0.02 * (p % 3 - 1)), "n_outputs": K,
        }
        for task in TASKS
        for metric, scale in METRICS.items()
        for p in range(N_PROMPTS)
    ]  # fmt: skip


def _verdicts(name: str, n_correct: int) -> list[dict[str, object]]:
    return [
        {"checkpoint": name, "task": "arith", "prompt_id": f"p{p}", "sample_index": i, "correct": i < n_correct}
        for p in range(N_PROMPTS)
        for i in range(K)
    ]


def study_scores() -> pd.DataFrame:
    """The per-prompt scores of the study's checkpoints at the study's setting."""
    return pd.DataFrame([row for name, level in LEVEL.items() for row in _scores(name, level)])


def sweep_study(
    temperatures: tuple[float, ...] = (0.6, 1.0, 1.4),
    *,
    verified: bool = True,
    swept_checkpoints: tuple[str, ...] = ("sft", "dpo", "rlzero"),
) -> tuple[AnalysisResult, pd.DataFrame]:
    """(the analysis with its sweep, the study's per-prompt scores) of the constructed study; ``verified`` False
    leaves the swept conditions without verdicts (the study's checkpoints keep theirs)."""
    spec = SweepSpec(temperature=list(temperatures), min_p=[None, 0.1], checkpoints=list(swept_checkpoints))
    conditions = sweep_conditions(spec, SAMPLING, list(LEVEL))
    swept = [c for c in conditions if not c.is_study_setting]
    scores = study_scores()
    verdicts = pd.DataFrame([row for name, n in CORRECT.items() for row in _verdicts(name, n)])
    sweep = SweepInputs(
        tuple(conditions),
        {"temperature": 0.6, "min_p": None},
        pd.DataFrame([row for c in swept for row in _scores(c.name, LEVEL[c.checkpoint] * _factor(c))]),
        pd.DataFrame([row for c in swept for row in _verdicts(c.name, _correct(c))]) if verified else None,
    )
    return analyze(scores, verdicts, graph(), bootstrap=FAST, sweep=sweep), scores


def _render(out: Path, analysis: AnalysisResult, scores: pd.DataFrame) -> tuple[str, str]:
    path = write_report(
        out,
        analysis=analysis,
        samples=[],
        per_prompt_scores=scores,
        graph=graph(),
        study_info=StudyInfo("sweep", metrics=tuple(METRICS), sampling=SAMPLING),
    )
    return path.read_text(encoding="utf-8"), (out / "summary.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    analysis, scores = sweep_study()
    return _render(tmp_path_factory.mktemp("swept"), analysis, scores)


def _section(html: str) -> str:
    start = html.index('<section id="recovery">')
    return html[start : html.index("</section>", start)]


def _figures(section: str) -> dict[str, str]:
    """Each recovery figure's SVG, by task."""
    found = re.findall(r'data-plot="recovery" data-task="([^"]+)" data-metric="sbert">(<svg.*?</svg>)', section, re.S)
    return dict(found)


def test_the_section_has_a_plot_per_task(swept: tuple[str, str]) -> None:
    html, _ = swept
    assert parse(html).svgs["recovery"] == len(TASKS)
    section = _section(html)
    assert "<h2>Can sampling undo it? The recovery frontier</h2>" in section
    assert "cannot be addressed at inference time alone" in section
    assert "the first setting, in the sweep&#39;s order, whose mean diversity is at least the base&#39;s" in section
    assert "The study's setting:\n  temperature=0.6, min_p=off." in section
    assert set(_figures(section)) == set(TASKS)  # the quality section's metric: sbert
    assert 'href="#recovery"' in html
    # After the diversity-against-quality section, before the decomposition.
    assert html.index('id="diversity-quality"') < html.index('id="recovery"') < html.index('id="curves"')


def test_each_plot_marks_the_base_with_a_star_and_a_dashed_line(swept: tuple[str, str]) -> None:
    figures = _figures(_section(swept[0]))
    for svg in figures.values():
        assert re.search(r'<g id="f\d+-base-star-0">', svg)
        line = re.search(r'<g id="f\d+-base-line-0">\s*<path [^>]*style="[^"]*stroke-dasharray', svg)
        assert line, "the base's dashed line"
        assert ">base at the study's setting</text>" in svg
        # Each swept checkpoint's study setting ringed: sft, dpo, rlzero.
        assert len(re.findall(r'<g id="f\d+-study-setting-\d">', svg)) == 3
        for checkpoint in ("sft", "dpo", "rlzero"):
            # one line per min_p value, each through the temperatures
            assert f">{checkpoint} (m off)</text>" in svg and f">{checkpoint} (m0.1)</text>" in svg
    # arith has pass@1: x is the quality, each point labelled with its setting.
    assert "quality of the same samples: pass@1 (%)" in figures["arith"]
    assert figures["arith"].count(">T1.4 m off</text>") == 3
    # poems has no quality: x is the sweep's order, the settings as tick labels.
    poems = figures["poems"]
    assert "no quality for this task" in poems
    ticks = ["T0.6 m off", "T0.6 m0.1", "T1.0 m off", "T1.0 m0.1", "T1.4 m off", "T1.4 m0.1"]
    assert [poems.count(f">{t}</text>") for t in ticks] == [1] * 6
    assert [poems.index(f">{t}</text>") for t in ticks] == sorted(poems.index(f">{t}</text>") for t in ticks)


def test_the_recovery_table_says_where_each_checkpoint_reaches_its_base(swept: tuple[str, str]) -> None:
    section = _section(swept[0])
    rows = re.findall(r'<tr data-task="arith" data-metric="sbert" data-reached="(\d)">(.*?)</tr>', section, re.S)
    cells = {re.findall(r"<td[^>]*>(.*?)</td>", row)[0]: (reached, row) for reached, row in rows}
    assert list(cells) == ["sft", "dpo", "rlzero"]  # lineage order
    reached, sft = cells["sft"]
    assert reached == "1"
    assert "base: 0.800 [" in sft and ">0.500</td>" in sft
    assert "<td>temperature=1.4, min_p=off</td>" in sft
    assert '<td class="num">0.900 [' in sft
    assert f"pass@1 {MINUS}50.0 points" in sft
    reached, dpo = cells["dpo"]
    assert reached == "0"
    assert "not reached in the sweep (highest: 0.720 at dpo+temperature=1.4+min_p=off)" in dpo
    assert "<td>temperature=0.6, min_p=off (the study&#39;s setting)</td>" in cells["rlzero"][1]
    # poems has no quality: the change is an en dash.
    poems = re.search(r'<tr data-task="poems" data-metric="sbert" data-reached="1">(.*?)</tr>', section, re.S)
    assert poems is not None and poems.group(1).rstrip().endswith('<td class="num">\N{EN DASH}</td>')


def test_a_checkpoint_the_sweep_leaves_out_has_no_recovery_row() -> None:
    analysis, _ = sweep_study(swept_checkpoints=("dpo",))
    assert set(analysis.sweep["checkpoint"]) == set(LEVEL)  # every checkpoint's study-setting point is there
    assert set(analysis.recovery["checkpoint"]) == {"dpo"}  # sft and rlzero were not swept: nothing to say of them


def test_summary_md_has_a_line_per_recovery_row(swept: tuple[str, str]) -> None:
    _, summary = swept
    section = summary[summary.index("## Recovery frontier") :]
    assert summary.index("## Diversity against quality") < summary.index("## Recovery frontier")
    assert "cannot be addressed at inference time alone" in section
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == 3 * len(TASKS) * len(METRICS)  # sft, dpo, rlzero per task and metric
    assert lines[0].startswith(
        "- sft on arith (sbert): reaches base's 0.800 at temperature=1.4, min_p=off (0.900 ["
    ) and lines[0].endswith(f"]); pass@1 {MINUS}50.0 points")
    highest = "(highest: 0.720 at dpo+temperature=1.4+min_p=off)"
    assert lines[1] == f"- dpo on arith (sbert): base's 0.800 not reached in the sweep {highest}"
    assert lines[2].startswith(
        "- rlzero on arith (sbert): reaches base's 0.800 at the study's setting, temperature=0.6"
    )
    assert lines[2].endswith("pass@1 +0.0 points")
    assert lines[3].startswith("- sft on arith (ead): reaches base's 0.480 at temperature=1.4")  # sbert first
    poems = next(line for line in lines if line.startswith("- sft on poems (sbert)"))
    assert poems[-1] == ")" and "points" not in poems  # no quality: no change to state


def test_a_study_setting_the_sweep_does_not_list_comes_first(tmp_path: Path) -> None:
    analysis, scores = sweep_study(temperatures=(1.0, 1.4))
    html, summary = _render(tmp_path, analysis, scores)
    poems = _figures(_section(html))["poems"]
    ticks = ["T0.6 m off", "T1.0 m off", "T1.0 m0.1", "T1.4 m off", "T1.4 m0.1"]
    assert [poems.index(f">{t}</text>") for t in ticks] == sorted(poems.index(f">{t}</text>") for t in ticks)
    # The study's setting is not a setting of the sweep: rlzero, above the base there, is swept only at 1.0 and up.
    assert "- rlzero on arith (sbert): reaches base's 0.800 at temperature=1.0, min_p=off (1.190 [" in summary


def test_a_task_whose_settings_lack_a_quality_is_drawn_in_the_sweeps_order(tmp_path: Path) -> None:
    analysis, scores = sweep_study(verified=False)
    html, summary = _render(tmp_path, analysis, scores)
    arith = _figures(_section(html))["arith"]
    assert "setting, in the sweep's order (quality missing at some settings)" in arith
    assert "quality of the same samples" not in arith
    assert arith.count(">T1.4 m off</text>") == 1  # a tick label, no point labels
    assert re.search(r'<g id="f\d+-base-star-0">', arith)
    line = next(line for line in summary.splitlines() if line.startswith("- sft on arith (sbert)"))
    assert line.endswith(")") and "points" not in line


def test_the_section_reads_the_same_from_the_analysis_directory(tmp_path: Path, swept: tuple[str, str]) -> None:
    analysis, scores = sweep_study()
    write_analysis(analysis, tmp_path / "analysis")
    html, summary = _render(tmp_path / "report", read_analysis(tmp_path / "analysis"), scores)
    assert re.sub(r"\bf\d+-", "", _section(html)) == re.sub(r"\bf\d+-", "", _section(swept[0]))
    assert summary == swept[1]


def test_no_section_without_a_sweep(tmp_path: Path) -> None:
    scores = study_scores()
    plain = analyze(scores, None, graph(), bootstrap=FAST)
    assert plain.sweep.empty and "sweep" not in plain.settings
    write_analysis(plain, tmp_path / "analysis")
    assert not (tmp_path / "analysis" / "sweep.parquet").exists()
    for name, result in (("fresh", plain), ("read back", read_analysis(tmp_path / "analysis"))):
        html, summary = _render(tmp_path / name, result, scores)
        assert 'id="recovery"' not in html and 'href="#recovery"' not in html, name
        assert "recovery frontier" not in html.lower() and "Recovery frontier" not in summary, name
        assert 'data-plot="recovery"' not in html, name
