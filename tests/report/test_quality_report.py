"""The "Diversity against quality" section of index.html and summary.md: there with its numbers when the analysis
has a quality (a judge's, or pass@1 from verdicts), absent otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from divtrace.analysis import analyze
from divtrace.report import write_report
from divtrace.report.study_info import StudyInfo
from divtrace.stats import BootstrapSettings
from tests.analysis.test_quality import graph, quality, scores, verdicts
from tests.report.test_report import parse

FAST = BootstrapSettings(resamples=200)
MINUS = "\N{MINUS SIGN}"


def _report(tmp_path: Path, **inputs: object) -> tuple[str, str]:
    analysis = analyze(scores(), bootstrap=FAST, graph=graph(), **inputs)  # type: ignore[arg-type]
    path = write_report(
        tmp_path,
        analysis=analysis,
        samples=[],
        per_prompt_scores=scores(),
        graph=graph(),
        study_info=StudyInfo("quality", metrics=("sbert", "ead")),
    )
    return path.read_text(encoding="utf-8"), (tmp_path / "summary.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _report(tmp_path_factory.mktemp("judged"), verdicts=verdicts(), quality=quality())


def test_the_html_section_has_a_plot_per_task_and_the_edges_with_their_sentences(judged: tuple[str, str]) -> None:
    html, _ = judged
    assert parse(html).svgs["diversity-quality"] == 4  # tldr, wp, wildbench, gsm8k: one plot each
    section = html[html.index('<section id="diversity-quality">') :]
    section = section[: section.index("</section>")]
    for task in ("tldr", "wp", "wildbench", "gsm8k"):
        assert f'data-plot="diversity-quality" data-task="{task}" data-metric="sbert"' in section
    assert 'href="#diversity-quality"' in html
    assert f"sft: sbert {MINUS}38% of base, win rate vs reference +21 points" in section
    assert f"dpo: ead {MINUS}12% of base, win rate vs base {MINUS}4 points" in section
    assert "30.0% → 51.0%" in section and "+21.0 points" in section  # tldr base -> sft
    assert f"{MINUS}38.0% [" in section
    assert "50.0% [50.0, 50.0], the baseline (by definition)" in section
    assert "6.45 [6.20, 6.70]" in section  # the WB-Score on its own scale
    assert "A hollow point is the baseline" in " ".join(section.split())


def test_summary_md_has_a_table_per_task_and_the_sentences(judged: tuple[str, str]) -> None:
    _, summary = judged
    section = summary[summary.index("## Diversity against quality") :]
    assert summary.index("## Collapse sites") < summary.index("## Diversity against quality")
    assert "### tldr" in section and "### wildbench" in section and "### gsm8k" in section
    assert "| checkpoint | quality | measure | sbert diversity | ead diversity |" in section
    assert "| sft | 51.0% [45.0, 57.0] | win rate vs reference |" in section
    assert "| base | 50.0% [50.0, 50.0], the baseline (by definition) | win rate vs base |" in section
    assert "| dpo | 6.45 [6.20, 6.70] | WB-Score (1-10) |" in section
    assert f"| base → sft | +21.0 points | {MINUS}38.0% [" in section
    assert f"- sft: sbert {MINUS}38% of base, win rate vs reference +21 points" in section
    assert "- dpo: sbert" in section and "- dpo: ead" not in section  # the sentences of the headline metric
    assert "WB-Score +0.5 points" in section
    assert "so its win rate is 50% by definition" in section  # the baseline's footnote: a baseline is shown
    counts = ", ".join(
        f"{c} \N{MULTIPLICATION SIGN} {t}: {n}"
        for c, t, n in (("sft", "tldr", 1), ("dpo", "wildbench", 3), ("sft", "wp", 2))
    )
    assert f"could not be read (as the judge reports them): {counts}." in section


def test_footnotes_only_when_used(tmp_path: Path) -> None:
    _, summary = _report(tmp_path, verdicts=None, quality=quality().query("task == 'tldr'").assign(n_unparseable=0))
    section = summary[summary.index("## Diversity against quality") :]
    assert "by definition" not in section and "could not be read" not in section
    assert "### tldr" in section and "### wp" not in section


def test_verdicts_alone_give_a_pass_at_1_section(tmp_path: Path) -> None:
    html, summary = _report(tmp_path, verdicts=verdicts(), quality=None)
    assert parse(html).svgs["diversity-quality"] == 1
    assert "### gsm8k" in summary and "### tldr" not in summary
    assert "pass@1 +" in summary


def test_no_section_without_a_quality(tmp_path: Path) -> None:
    html, summary = _report(tmp_path, verdicts=None, quality=None)
    assert 'id="diversity-quality"' not in html and 'href="#diversity-quality"' not in html
    assert "Diversity against quality" not in html and "Diversity against quality" not in summary
