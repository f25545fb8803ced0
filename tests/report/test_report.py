"""The report stage: index.html (self-contained, escaped, every section) and summary.md, rendered in real chromium.

A realistic study is constructed in code: a base -> sft -> dpo -> rl lineage, an rl-zero branch and the rl
checkpoint sampled again with thinking suppressed; a verifiable task (with verdicts and a ``correct`` subset) and a
creative one; K = 8 outputs per prompt, ``k=N`` subsets for the curves. The real :func:`divtrace.analysis.analyze`
turns the scores into the analysis tables. One prompt's leaf outputs are hostile HTML.

The browser test needs Debian's chromium (``apt-get install -y --no-install-recommends chromium``); it is skipped,
with that command in the reason, when no chromium binary is on PATH.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divtrace.analysis import AnalysisResult, analyze
from divtrace.errors import DivtraceError
from divtrace.report import report_tables, write_report
from divtrace.report.html import _cut, _fit_budget, indistinguishable_cells
from divtrace.report.study_info import StudyInfo
from divtrace.report.summary_md import render_summary_md
from divtrace.samples import SampleRecord
from divtrace.stats import BootstrapSettings
from divtrace.study import CheckpointSpec, SamplingSpec
from divtrace.study.lineage import CheckpointNode, LineageGraph

K = 8
N_PROMPTS = 10
TASKS = ("gsm8k", "poems")
METRICS = ("sbert", "ead")
HOSTILE_OUTPUT = "<script>alert(1)</script>"
HOSTILE_IMG = "<img src=x onerror=\"document.body.dataset.pwned='1'\">"
HOSTILE_PROMPT = '</div><script>document.title="PWNED"</script> What is 2+2?'
CAVEAT = "the base and instruct models are from different families: this is a cross-family comparison, not a lineage"
STUDY_INFO = StudyInfo(
    name="constructed <lineage> study",
    caveat=CAVEAT,
    description="A constructed study for the report tests.",
    tasks={task: "constructed" for task in TASKS},
    metrics=tuple(METRICS),
    embedder={"model": "all-MiniLM-L6-v2", "normalize": True},
    sampling=SamplingSpec(k=K, temperature=1.0, top_p=1.0, seed=1234),
    checkpoints=(CheckpointSpec(name="base", model="quickstart:base"),),
)
CHROMIUM_INSTALL = "apt-get install -y --no-install-recommends chromium"
SECTIONS = ("lineage", "heatmaps", "waterfalls", "qfd", "thinking", "curves")

# Diversity kept relative to the base (per metric), accuracy, per checkpoint.
RETAINED = {
    "base": (1.0, 1.0),
    "sft": (0.8, 0.9),
    "dpo": (0.6, 0.8),
    "rl": (0.42, 0.7),
    "rlzero": (0.88, 0.95),
    "rl-nothink": (0.55, 0.75),
}
ACCURACY = {"base": 0.3, "sft": 0.5, "dpo": 0.55, "rl": 0.8, "rlzero": 0.7, "rl-nothink": 0.6}


def make_graph() -> LineageGraph:
    """base -> sft -> dpo -> rl, base -> rlzero, and rl sampled with thinking suppressed."""
    return LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("sft", "sft", "base"),
            CheckpointNode("dpo", "dpo", "sft"),
            CheckpointNode("rl", "rl", "dpo"),
            CheckpointNode("rlzero", "rl-zero", "base"),
            CheckpointNode("rl-nothink", "rl", variant_of="rl", thinking="suppressed"),
        ]
    )


def make_study(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[SampleRecord]]:
    """(scores, verdicts, samples) of the constructed study; prompt p00 of gsm8k collapses hardest in rl."""
    rng = np.random.default_rng(seed)
    scores, verdicts, samples = [], [], []
    for task in TASKS:
        base_level = rng.uniform(0.5, 0.8, size=N_PROMPTS)
        for checkpoint, kept in RETAINED.items():
            for p in range(N_PROMPTS):
                prompt_id = f"p{p:02d}"
                hostile = task == "gsm8k" and prompt_id == "p00"
                correct = rng.random(K) < ACCURACY[checkpoint] if task == "gsm8k" else None
                for m, metric in enumerate(METRICS):
                    value = base_level[p] * kept[m] * rng.normal(1.0, 0.05)
                    if hostile and checkpoint == "rl":
                        value = 0.01
                    scores.append((checkpoint, task, prompt_id, metric, "all", value, K))
                    for k in (2, 4):
                        scores.append((checkpoint, task, prompt_id, metric, f"k={k}", value * (0.6 + 0.1 * k), k))
                    if correct is not None:
                        n_correct = int(correct.sum())
                        kept_correct = 1 - 0.4 * (1 - kept[m])
                        value_correct = (
                            base_level[p] * kept_correct * rng.normal(1.0, 0.05) if n_correct >= 2 else np.nan
                        )
                        scores.append((checkpoint, task, prompt_id, metric, "correct", value_correct, n_correct))
                if correct is not None:
                    verdicts += [(checkpoint, task, prompt_id, i, bool(c)) for i, c in enumerate(correct)]
                distinct = max(1, round(K * kept[0]))
                outputs = [
                    f"{checkpoint} answer {i % distinct} to {task} prompt {p}: the answer is {i % distinct}"
                    for i in range(K)
                ]
                if hostile and checkpoint == "rl":
                    outputs = [HOSTILE_OUTPUT] * (K - 1) + [HOSTILE_IMG]
                prompt = HOSTILE_PROMPT if hostile else f"{task} prompt number {p}"
                samples.append(
                    SampleRecord(prompt_id=prompt_id, prompt=prompt, outputs=outputs, checkpoint=checkpoint, task=task)
                )
    score_frame = pd.DataFrame(
        scores, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"]
    )
    verdict_frame = pd.DataFrame(verdicts, columns=["checkpoint", "task", "prompt_id", "sample_index", "correct"])
    return score_frame, verdict_frame, samples


@pytest.fixture(scope="module")
def study() -> dict[str, object]:
    scores, verdicts, samples = make_study()
    graph = make_graph()
    analysis = analyze(scores, verdicts, graph, bootstrap=BootstrapSettings(resamples=200))
    return {"scores": scores, "verdicts": verdicts, "samples": samples, "graph": graph, "analysis": analysis}


@pytest.fixture(scope="module")
def report(study: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    path = write_report(
        out,
        analysis=study["analysis"],
        samples=study["samples"],
        per_prompt_scores=study["scores"],
        graph=study["graph"],
        study_info=STUDY_INFO,
    )
    assert path == out / "index.html"
    return path


class _Sections(HTMLParser):
    """Counts <svg> elements per <section id=...>, and collects every src/href attribute value."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: dict[str, int] = {}
        self.links: list[str] = []
        self.tags: dict[str, int] = {}
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        values = dict(attrs)
        if tag == "section":
            self._section = values.get("id")
            self.svgs.setdefault(self._section or "", 0)
        if tag == "svg" and self._section:
            self.svgs[self._section] += 1
        self.links += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]


def parse(text: str) -> _Sections:
    parser = _Sections()
    parser.feed(text)
    return parser


def test_every_section_has_its_figures(report: Path) -> None:
    parsed = parse(report.read_text(encoding="utf-8"))
    for section in SECTIONS:
        assert parsed.svgs.get(section, 0) >= 1, f"section {section!r} has no figure: {parsed.svgs}"
    assert parsed.svgs["heatmaps"] == len(METRICS)
    assert parsed.svgs["waterfalls"] == 2  # lineages rl and rlzero
    assert parsed.svgs["curves"] == len(TASKS)


def test_header_shows_the_study_and_the_caveat_first(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "constructed &lt;lineage&gt; study" in text
    caveat = text.index('class="caveat"')
    assert caveat < text.index('id="lineage"')
    assert html.escape(CAVEAT, quote=False) in text[caveat : caveat + 400]
    for expected in ("all-MiniLM-L6-v2", "temperature = 1.0", "k = 8", "base → sft → dpo → rl", "quickstart:base"):
        assert expected in text


def test_self_contained_no_network(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    parsed = parse(text)
    # Raster parts of figures (heatmap cells, colour bars) are inline data: URIs; nothing else may be linked.
    external = [link for link in parsed.links if not link.startswith(("#", "data:image/png;base64,"))]
    assert external == [], f"links to outside resources: {external[:5]}"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.IGNORECASE)
    assert "@import" not in text
    assert parsed.tags.get("script", 0) == 0 and parsed.tags.get("link", 0) == 0
    assert "default-src 'none'" in text  # a CSP that would block any fetch or script anyway


def test_drilldown_escapes_untrusted_text(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    block = text[text.index('id="drilldown"') :]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block
    assert "&lt;img src=x onerror=" in block
    assert "&lt;/div&gt;&lt;script&gt;document.title=" in block
    assert "<script" not in text.lower() and "<img" not in text.lower()
    # Most- and least-collapsed prompts, each with base and leaf outputs side by side.
    assert block.count('data-kind="most"') >= 4 and block.count('data-kind="least"') >= 4
    assert block.count('<ol class="outputs">') == 2 * (
        block.count('data-kind="most"') + block.count('data-kind="least"')
    )
    first = block[block.index('data-kind="most"') : block.index("</details>")]
    assert "prompt p00" in first  # the forced collapse ranks first
    assert "rl · 8 responses, 2 distinct" in first and '<span class="count">\N{MULTIPLICATION SIGN}7</span>' in first


def test_summary_md_headline_table(report: Path, study: dict[str, object]) -> None:
    text = (report.parent / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("# constructed \\<lineage> study")  # raw HTML escaped
    assert f"> **Caveat:** {CAVEAT}" in text
    assert "## rl: base → sft → dpo → rl" in text and "## rlzero: base → rlzero" in text
    assert "| task | metric | sft | dpo | rl | retained |" in text
    assert "| task | metric | rl-zero (rlzero) | retained |" in text
    row = next(line for line in text.splitlines() if line.startswith("| gsm8k | sbert |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    headline = study["analysis"].headline
    expected = headline[(headline["lineage"] == "rl") & (headline["task"] == "gsm8k") & (headline["metric"] == "sbert")]
    assert cells[-1] == f"{expected['retained_pct'].iloc[0]:.1f}%"
    change = f"{expected['change_pct_base'].iloc[0]:+.1f}% [".replace("-", "\N{MINUS SIGN}")
    assert cells[2].strip("*").startswith(change)
    assert sum(c.startswith("**") for c in cells[2:-1]) == 1  # exactly one collapse site, in bold
    assert "## Collapse sites" in text


def test_summary_md_escapes_pipes() -> None:
    headline = pd.DataFrame(
        {
            "lineage": ["a|b"],
            "task": ["t"],
            "metric": ["m"],
            "step": [1],
            "parent": ["base"],
            "child": ["a|b"],
            "stage": ["sft"],
            "change_pct_base": [-12.5],
            "change_pct_base_ci_low": [-15.0],
            "change_pct_base_ci_high": [-10.0],
            "is_collapse_site": [True],
            "retained_pct": [87.5],
        }
    )
    text = render_summary_md(headline, study_info=StudyInfo("x"))
    assert "| t | m | **\N{MINUS SIGN}12.5% [\N{MINUS SIGN}15.0, \N{MINUS SIGN}10.0]** | 87.5% |" in text
    assert "## a\\|b: base → a\\|b" in text


def test_sections_without_data_are_left_out(tmp_path: Path) -> None:
    scores, _, _ = make_study(seed=1)
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base")])
    scores = scores[scores["checkpoint"].isin(["base", "sft"]) & (scores["subset"] == "all")]
    analysis = analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100))
    path = write_report(
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info=StudyInfo("tiny")
    )
    text = path.read_text(encoding="utf-8")
    assert 'id="qfd"' not in text and 'id="thinking"' not in text and 'class="caveat"' not in text
    assert parse(text).svgs["lineage"] == 1
    assert "(outputs not available)" in text  # no samples given: the drill-down still ranks prompts


def tables_only(**tables: pd.DataFrame) -> AnalysisResult:
    """An analysis with ``tables`` and every other table empty (as an older divtrace may have written it)."""
    empty = {field.name: pd.DataFrame() for field in dataclasses.fields(AnalysisResult) if field.name != "settings"}
    return AnalysisResult(**{**empty, **tables})


def test_tables_read_back_from_disk_fill_missing_columns() -> None:
    tables = report_tables(
        tables_only(
            qfd=pd.DataFrame({"checkpoint": ["c"], "quality_control_share": [0.7], "delta_all": [-0.1]}),
            thinking=pd.DataFrame({"diversity_suppressed": [0.2]}),
        )
    )
    assert tables.qfd["quality_control_share"].tolist() == [0.7]
    assert tables.qfd["delta_all"].tolist() == [-0.1]
    assert tables.qfd["residual_share"].isna().all()
    assert tables.thinking["diversity_suppressed"].tolist() == [0.2]
    assert tables.edges.empty and "delta_pct_base_ci_low" in tables.edges.columns


def test_template_is_package_data() -> None:
    from importlib import resources

    template = resources.files("divtrace.report") / "templates" / "index.html.j2"
    assert template.is_file() and "<!DOCTYPE html>" in template.read_text(encoding="utf-8")


def test_long_outputs_keep_head_and_tail() -> None:
    text = "a" * 700 + "b" * 600 + "ANSWER 42"
    cut = _cut(text, 100)
    assert cut is not None and cut.startswith("a" * 70) and cut.endswith("ANSWER 42")
    assert "1209 characters cut" in cut
    assert _cut("short", 100) == "short"
    lengths = np.array([50, 400, 1000, 1000])
    assert _fit_budget(lengths, 1000, 10_000) == 1000  # fits: unchanged
    assert _fit_budget(lengths, 1000, 1450) == 500  # 50 + 400 + 500 + 500
    assert _fit_budget(lengths, 1000, 10) == 200  # never below 200


def test_bad_drilldown_choices_raise(study: dict[str, object], tmp_path: Path) -> None:
    common = {
        "analysis": study["analysis"],
        "samples": study["samples"],
        "per_prompt_scores": study["scores"],
        "graph": study["graph"],
        "study_info": STUDY_INFO,
    }
    with pytest.raises(DivtraceError, match="not lineages"):
        write_report(tmp_path, drilldown_lineages=["sft"], **common)
    with pytest.raises(DivtraceError, match="no per-prompt scores"):
        write_report(tmp_path, primary_metric="nli", **common)
    assert not (tmp_path / "index.html").exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


_PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  const sections = {};
  for (const s of document.querySelectorAll("section[id]")) sections[s.id] = s.querySelectorAll("svg").length;
  out.textContent = JSON.stringify({
    resources: performance.getEntriesByType("resource").map((e) => e.name),
    title: document.title,
    pwned: document.body.dataset.pwned || null,
    scripts: document.scripts.length,
    imgs: document.images.length,
    sections: sections,
    outputs: document.querySelectorAll("ol.outputs li").length,
    hostile_text: [...document.querySelectorAll("ol.outputs li span.text")].filter((s) => s.textContent === %s).length,
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
def test_renders_in_headless_chromium(report: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip(f"chromium is not installed (Debian/Ubuntu: {CHROMIUM_INSTALL})")
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio"]
    screenshot = report.parent / "report.png"
    started = time.monotonic()
    subprocess.run(
        [*flags, f"--screenshot={screenshot}", "--window-size=1400,3000", report.as_uri()],
        check=True,
        capture_output=True,
        timeout=90,
    )
    shot_seconds = time.monotonic() - started
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert int.from_bytes(data[16:20], "big") == 1400 and int.from_bytes(data[20:24], "big") == 3000
    print(f"\nreport screenshot: {screenshot} ({len(data)} bytes, chromium {shot_seconds:.1f} s)")

    # The same page without its CSP, plus a probe script: escaping alone must keep hostile text inert.
    text = report.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    probe = report.parent / "probe.html"
    probe.write_text(
        text.replace("</body>", _PROBE % json.dumps(HOSTILE_OUTPUT).replace("</", "<\\/") + "</body>"), encoding="utf-8"
    )
    started = time.monotonic()
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    print(f"chromium --dump-dom: {time.monotonic() - started:.1f} s")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the probe did not run: the page failed to load"
    result = json.loads(html.unescape(found.group(1)))
    assert result["resources"] == [], "the page fetched something"
    assert result["pwned"] is None and result["title"] != "PWNED"
    assert result["scripts"] == 1 and result["imgs"] == 0  # only the probe; no injected element
    for section in SECTIONS:
        assert result["sections"].get(section, 0) >= 1, result["sections"]
    assert result["outputs"] > 0 and result["hostile_text"] == 1  # shown as text (merged: x7), not run
    assert 'class="caveat"' in dom and "cross-family comparison" in dom


def _olmo3_analysis() -> tuple[LineageGraph, pd.DataFrame, object]:
    """The olmo3-7b preset's graph with constructed SBERT scores (2 tasks x 4 prompts), analysed without the name."""
    from divtrace.study import olmo3_7b_study

    graph = olmo3_7b_study().graph()
    rng = np.random.default_rng(4)
    rows = [
        (name, task, f"p{p}", "sbert", "all", 0.4 * (1 - 0.05 * i) * rng.normal(1, 0.02), 16)
        for i, name in enumerate(graph.nodes)
        for task in ("gsm8k", "tldr")
        for p in range(4)
    ]
    scores = pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"])
    return graph, scores, analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100))


def test_table1_is_at_the_top_with_the_paper_row_for_olmo3(tmp_path: Path) -> None:
    graph, scores, analysis = _olmo3_analysis()
    path = write_report(
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info=StudyInfo("olmo3-7b")
    )
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.index("## Table 1") < text.index("## Per task") < text.index("## Collapse sites")
    lines = text.splitlines()
    think = next(
        i for i, line in enumerate(lines) if line.startswith("| think | base → think-sft → think-dpo → think |")
    )
    minus = "\N{MINUS SIGN}"
    assert lines[think + 1] == f"| ↳ paper | published | sbert | {minus}62 | {minus}4 | +4 | 38% | 15 |"
    instruct = next(i for i, line in enumerate(lines) if line.startswith("| instruct |"))
    assert lines[instruct + 1] == f"| ↳ paper | published | sbert | {minus}38 | {minus}23 | {minus}5 | 34% | 15 |"
    group = next(i for i, line in enumerate(lines) if line.startswith("| rl-zero (mean) |"))
    assert lines[group + 1] == "| ↳ paper | published | sbert | \N{EN DASH} |  |  | 93% | 15 |"
    assert "Karouzos, Tan, Aletras (2026)" in text
    ours = analysis.table1[(analysis.table1.lineage == "think") & (analysis.table1.metric == "sbert")]
    first = ours.iloc[0]
    assert f"sft: {first['change_pct_base']:+.1f}%".replace("-", "\N{MINUS SIGN}") in lines[think]
    assert f"{first['retained_pct']:.1f}% [" in lines[think]

    page = path.read_text(encoding="utf-8")
    assert page.index('id="table1"') < page.index('id="lineage"') < page.index('id="heatmaps"')
    section = page[page.index('id="table1"') : page.index('id="lineage"')]
    assert section.count('class="paper"') == 3 and 'data-paper="rl-zero"' in section
    assert "38%" in section and "\N{MINUS SIGN}62" in section

    other = write_report(
        tmp_path / "other", analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph,
        study_info=StudyInfo("my-study"),
    )  # fmt: skip
    assert "↳ paper" not in (tmp_path / "other" / "summary.md").read_text(encoding="utf-8")
    assert 'class="paper"' not in other.read_text(encoding="utf-8")


def test_report_without_table1_says_to_rerun_analyze(tmp_path: Path, study: dict[str, object]) -> None:
    older = dataclasses.replace(study["analysis"], table1=pd.DataFrame())  # read_analysis gives this for no file
    path = write_report(
        tmp_path, analysis=older, samples=[], per_prompt_scores=study["scores"], graph=study["graph"],
        study_info=StudyInfo("old"),
    )  # fmt: skip
    assert "run <code>divtrace analyze</code> again" in path.read_text(encoding="utf-8")
    assert "run `divtrace analyze` again" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_shares_outside_unit_are_explained(tmp_path: Path) -> None:
    """base -> rl: all outputs narrow (ΔD_all -0.2) while the correct ones diversify (ΔD_correct +0.05)."""
    rows = []
    for p in range(6):
        for checkpoint, all_value, correct_value in (("base", 0.6, 0.30), ("rl", 0.4, 0.35)):
            rows.append((checkpoint, "gsm8k", f"p{p}", "sbert", "all", all_value + 0.01 * p, K))
            rows.append((checkpoint, "gsm8k", f"p{p}", "sbert", "correct", correct_value + 0.01 * p, 4))
    scores = pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"])
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("rl", "rl", "base")])
    analysis = analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100))
    assert analysis.qfd["share_outside_unit"].tolist() == [True]
    path = write_report(
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info=StudyInfo("x")
    )
    sentence = "A share outside [0, 1] means ΔD_correct is larger than ΔD_all or of the opposite sign"
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert f"† {sentence}" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| base → rl | gsm8k | sbert |"))
    minus = "\N{MINUS SIGN}"
    delta_all, delta_correct = f"{minus}0.200 [{minus}0.200, {minus}0.200]", "+0.050 [+0.050, +0.050]"
    shares = f"125.0% [125.0, 125.0] † | {minus}25.0% [{minus}25.0, {minus}25.0] †"  # constant: the CI is the point
    assert f"| {delta_all} | {delta_correct} | {shares} | 6 / 6 |" in row
    page = path.read_text(encoding="utf-8")
    assert 'id="qfd-outside-unit"' in page and sentence in page
    assert "each checkpoint's D_all and D_correct are averaged over its own prompts" in page


def test_indistinguishable_outputs_are_warned_about_in_the_report(tmp_path: Path) -> None:
    scores, _, _ = make_study(seed=2)
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base")])
    scores = scores[scores["checkpoint"].isin(["base", "sft"]) & (scores["subset"] == "all")].copy()
    scores["indistinguishable_texts"] = pd.NA
    # sft: 3 outputs of one prompt and 1 of another look identical to the embedder (sbert and vendi agree)
    task = sorted(scores["task"].unique())[0]
    first, second = sorted(scores.loc[scores["task"] == task, "prompt_id"].unique())[:2]
    embedding_rows = (
        scores["metric"].isin(["sbert", "vendi"]) & (scores["checkpoint"] == "sft") & (scores["task"] == task)
    )
    scores.loc[embedding_rows, "indistinguishable_texts"] = 0
    scores.loc[embedding_rows & (scores["prompt_id"] == first), "indistinguishable_texts"] = 3
    scores.loc[embedding_rows & (scores["prompt_id"] == second), "indistinguishable_texts"] = 1
    assert indistinguishable_cells(scores) == [{"checkpoint": "sft", "task": task, "outputs": 4}]
    analysis = analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100))
    path = write_report(
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info=StudyInfo("t")
    )
    assert 'id="indistinguishable"' in path.read_text(encoding="utf-8")
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "Outputs the embedder cannot tell apart" in summary and f"sft \N{MULTIPLICATION SIGN} {task}: 4" in summary
    assert indistinguishable_cells(scores.drop(columns="indistinguishable_texts")) == []


def test_inline_svg_carries_no_timestamp() -> None:
    """A figure drawn twice gives the same bytes: matplotlib's SVG date stamp is left out."""
    import matplotlib.pyplot as plt

    from divtrace.report.plots import svg_of

    def drawn() -> str:
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1, 0, 1])
        try:
            return re.sub(r'(?<=["#])f\d+-', "f-", svg_of(fig))  # ids (and references) are numbered per figure
        finally:
            plt.close(fig)

    first, second = drawn(), drawn()
    assert "<svg" in first and "dc:date" not in first
    assert first == second


# ----- Issue 20: one sentence per lineage and metric, one sign, each fact once, axes that fit, footnotes when used

MINUS = "\N{MINUS SIGN}"


def _table1_rows(lineage: str, path: list[str], stages: list[str], metric: str, steps: list[tuple]) -> list[dict]:
    """Table 1 rows of one lineage and metric: ``steps`` = [(change, low, high)] along ``path``."""
    retained = 100 + sum(change for change, _, _ in steps)
    return [
        {
            "lineage": lineage, "kind": "lineage", "members": lineage, "base": path[0], "path": " → ".join(path),
            "metric": metric, "step": i, "parent": path[i - 1], "child": path[i], "stage": stages[i - 1],
            "n_tasks": 2, "tasks": "t1, t2", "n_prompts": 20,
            "change_pct_base": change, "change_pct_base_ci_low": low, "change_pct_base_ci_high": high,
            "retained_pct": retained, "retained_pct_ci_low": retained - 3, "retained_pct_ci_high": retained + 3,
        }
        for i, (change, low, high) in enumerate(steps, start=1)
    ]  # fmt: skip


def _example_table1() -> pd.DataFrame:
    """The issue's examples: think's SBERT collapses at SFT (-62 [-65, -59]), DPO and RL change < 5%; think's
    Vendi also loses at DPO and gains at RL; instruct's EAD gained (+12.3 [+4.8, +25.3], the quickstart case)."""
    think = ["base", "think-sft", "think-dpo", "think"]
    rows = _table1_rows("think", think, ["sft", "dpo", "rl"], "sbert", [(-62, -65, -59), (-4, -9, 1), (4, -1, 9)])
    rows += _table1_rows("think", think, ["sft", "dpo", "rl"], "vendi", [(-20, -25, -15), (-10, -12, -8), (6, 2, 10)])
    rows += _table1_rows("instruct", ["base", "instruct"], ["instruct"], "ead", [(12.3, 4.8, 25.3)])
    rows += _table1_rows("instruct", ["base", "instruct"], ["instruct"], "sbert", [(-7, -15, 1)])
    return pd.DataFrame(rows)


EXPECTED_FINDINGS = [
    f"think · sbert: collapses at sft (think-sft): {MINUS}62.0% [{MINUS}65.0, {MINUS}59.0] of base; "
    "dpo and rl change < 5%.",
    f"think · vendi: collapses at sft (think-sft): {MINUS}20.0% [{MINUS}25.0, {MINUS}15.0] of base; also loses at "
    f"dpo: {MINUS}10.0% [{MINUS}12.0, {MINUS}8.0]; gains at rl: +6.0% [+2.0, +10.0].",
    f"instruct · sbert: no significant loss; instruct: {MINUS}7.0% [{MINUS}15.0, +1.0], not significant.",
    "instruct · ead: no significant loss; gains at instruct: +12.3% [+4.8, +25.3].",
]


def test_one_sentence_per_lineage_and_metric_says_where_it_collapsed() -> None:
    from divtrace.report.findings import headline_findings, table1_view

    view = table1_view(_example_table1(), "my-study", ["ead", "vendi", "sbert"])
    assert [str(f) for f in headline_findings(view)] == EXPECTED_FINDINGS
    # Table 1 marks the same sites: SBERT and Vendi of think at sft, none for instruct (one lost, one gained).
    sites = {(r["lineage"], r["metric"]): [s["site"] for s in r["steps"]] for r in view["rows"]}
    assert sites == {
        ("think", "sbert"): [True, False, False],
        ("think", "vendi"): [True, False, False],
        ("instruct", "sbert"): [False],
        ("instruct", "ead"): [False],
    }
    assert [r["metric"] for r in view["rows"]] == ["sbert", "sbert", "ead", "vendi"]  # the paper's first

    text = render_summary_md(pd.DataFrame(), study_info=StudyInfo("s"), table1=_example_table1(), metrics=["ead"])
    lines = text.splitlines()
    opening = lines.index("## Where diversity collapses")
    assert opening == 2 and text.index("## Where diversity collapses") < text.index("## Table 1")
    bullets = lines[opening + 2 : opening + 6]
    assert [b.replace("**", "") for b in bullets] == [f"- {f}" for f in EXPECTED_FINDINGS]
    assert text.count("negative = diversity lost") == 1  # the sign convention, stated once


def test_report_opens_with_the_sentences(report: Path, study: dict[str, object]) -> None:
    from divtrace.report.findings import headline_findings, table1_view

    page = report.read_text(encoding="utf-8")
    findings = headline_findings(table1_view(study["analysis"].table1, STUDY_INFO.name, list(METRICS)))
    assert len(findings) == 2 * len(METRICS)  # lineages rl and rlzero, each metric
    first = page.index('id="findings"')
    assert first < page.index('id="checkpoints"') < page.index('id="table1"')
    for finding in findings:
        assert f"<b>{html.escape(finding.subject)}</b>: {html.escape(finding.text)}" in page
    assert page.count("negative = diversity lost") == 1
    summary = (report.parent / "summary.md").read_text(encoding="utf-8")
    assert summary.count("negative = diversity lost") == 1 and "positive = diversity lost" not in summary


def _loss_study(ratio: float, *, tasks: tuple[str, ...] = ("poems",)) -> tuple[pd.DataFrame, LineageGraph, object]:
    """base -> sft with SBERT multiplied by ``ratio`` on every prompt: a change of exactly 100 (ratio - 1)% of base,
    the same in every bootstrap resample."""
    rng = np.random.default_rng(3)
    rows = []
    for task in tasks:
        base = rng.uniform(0.5, 0.9, N_PROMPTS)
        for name, values in (("base", base), ("sft", base * ratio)):
            rows += [(name, task, f"p{p:02d}", "sbert", "all", v, K) for p, v in enumerate(values)]
    scores = pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"])
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base")])
    return scores, graph, analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100))


def test_one_sbert_loss_reads_the_same_signed_number_in_every_table(tmp_path: Path) -> None:
    """The issue's example: one SBERT loss read -80.5%, 80.5% and -80.5% in summary.md's three tables."""
    scores, graph, analysis = _loss_study(0.195)
    path = write_report(tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph,
                        study_info=StudyInfo("one loss"))  # fmt: skip
    loss = f"{MINUS}80.5% [{MINUS}80.5, {MINUS}80.5]"
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    table1 = next(line for line in summary.splitlines() if line.startswith("| sft | base → sft | sbert |"))
    per_task = next(line for line in summary.splitlines() if line.startswith("| poems | sbert |"))
    site = next(line for line in summary.splitlines() if line.startswith("| sft | poems | sbert |"))
    assert f"**sft: {loss}**" in table1
    assert f"| **{loss}** |" in per_task
    assert f"| base → sft (sft) | {loss} | 100% |" in site
    assert f"sft · sbert**: collapses at sft: {loss} of base." in summary
    page = path.read_text(encoding="utf-8")
    for text in (summary, page):
        assert re.findall(r"80\.5", text) and not re.findall(rf"(?<![{MINUS}\d])80\.5", text)  # always with its sign


def test_checkpoint_table_shows_each_fact_once(tmp_path: Path) -> None:
    """The checkpoint table repeated the other columns as Python reprs (``options: {}``) and the sampling line
    showed ``top_k = None``; now each fact is shown once, unset settings are left out."""
    from divtrace.report.html import checkpoint_settings

    base = CheckpointSpec(name="base", model="quickstart:gemma-3-270m")
    sft = CheckpointSpec(
        name="sft", model="org/sft", stage="sft", parent="base", backend="vllm", options={"dtype": "bfloat16"},
        chat_template=True, revision="abc123",
    )  # fmt: skip
    assert checkpoint_settings(base) == "backend = transformers"
    assert checkpoint_settings(sft) == "revision = abc123; backend = vllm; chat_template = yes; dtype = bfloat16"
    scores, graph, analysis = _loss_study(0.9)
    info = StudyInfo("c", checkpoints=(base, sft), sampling=SamplingSpec())
    page = write_report(tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph,
                        study_info=info).read_text(encoding="utf-8")  # fmt: skip
    table = page[page.index('<table id="checkpoints">') : page.index("</table>", page.index('id="checkpoints"'))]
    assert "<th>model</th>" in table and "<th>settings</th>" in table and "details" not in table
    assert "<td>sft</td><td>sft</td><td>base</td><td>org/sft</td><td>native</td>" in table
    for repr_text in ("None", "{}", "options", "stage:", "thinking:", "parent:"):
        assert repr_text not in table, repr_text
    sampling = page[page.index("<dt>Sampling") : page.index("<dt>Lineages")]
    assert "top_k" not in sampling and "None" not in sampling and "temperature = 0.6" in sampling
    assert "top_k" not in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_waterfall_axes_fit_their_data() -> None:
    """Small changes (-3%, +2%): the axis no longer stops at 100 with the bars hanging from its top edge; it
    spans 0 to just above the highest bar or CI end. A gain of +25% raises the top above 125."""
    from divtrace.report.plots import WATERFALL_MARGIN, waterfall_figure, waterfall_limits

    assert waterfall_limits([100, 97, 99, 101.5]) == pytest.approx((0.0, 101.5 + WATERFALL_MARGIN * 101.5))
    assert waterfall_limits([100, 125.3, float("nan")]) == pytest.approx((0.0, 125.3 * (1 + WATERFALL_MARGIN)))
    assert waterfall_limits([100, -10]) == pytest.approx((-10 - 5.5, 100 + 5.5))  # something below 0: a margin

    for ratio, top_at_least in ((0.97, 100.0), (1.25, 125.0)):
        edges = _loss_study(ratio)[2].edges
        figure = waterfall_figure(edges, ["base", "sft"], ["sbert"], ["poems"])
        low, high = figure.axes[0].get_ylim()
        highest = max(100.0, float(100 + edges["delta_pct_base_ci_high"].max()))
        assert low == 0.0 and high == pytest.approx(highest * (1 + WATERFALL_MARGIN))
        assert high > top_at_least and high < top_at_least + 10


def test_footnotes_appear_only_when_used(tmp_path: Path) -> None:
    """A lineage that gained (no site, no QFD, no paper row): no legend for bold, no †, ‡ or paper note; the
    lineage's sentence and the collapse-site table say it gained."""
    scores, graph, analysis = _loss_study(1.1)
    path = write_report(tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph,
                        study_info=StudyInfo("gain"))  # fmt: skip
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    page = path.read_text(encoding="utf-8")
    for text in (summary, page):
        for mark in ("Bold", "†", "‡", "↳ paper", "* CI", "in a share: undefined"):
            assert mark not in text, mark
    assert (
        "| sft | poems | sbert | none: no significant loss, diversity gained | \N{EN DASH} | \N{EN DASH} |" in summary
    )
    assert "sft · sbert**: no significant loss; gains at sft: +10.0% [+10.0, +10.0]." in summary
    assert 'data-status="gained"' in page and "none: no significant loss, diversity gained" in page

    _, _, lost = _loss_study(0.8)  # now a site: the bold legend comes with it
    text = render_summary_md(lost.headline, study_info=StudyInfo("x"), table1=lost.table1)
    assert text.count("**Bold**") == 2 and "**sft: " in text  # Table 1 and per task, each where bold is used


def _flagged_qfd_study() -> tuple[pd.DataFrame, LineageGraph, object]:
    """base -> sft -> rl, verifiable tasks t1 (D_all barely moves: its CI includes 0) and t3 (a clear fall)."""
    rng = np.random.default_rng(5)
    rows = []
    for task, shifts in (("t1", (0.0, 0.01, 0.0)), ("t3", (0.0, -0.2, -0.3))):
        for name, shift in zip(("base", "sft", "rl"), shifts, strict=True):
            for p in range(8):
                rows.append((name, task, f"p{p}", "sbert", "all", 0.6 + shift + rng.normal(0, 0.05), K))
                rows.append((name, task, f"p{p}", "sbert", "correct", 0.5 + shift / 2 + rng.normal(0, 0.05), 4))
    scores = pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"])
    graph = LineageGraph(
        [CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base"), CheckpointNode("rl", "rl", "sft")]
    )
    return scores, graph, analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=200))


def test_qfd_flag_is_shown_and_explained(tmp_path: Path) -> None:
    scores, graph, analysis = _flagged_qfd_study()
    qfd = analysis.qfd
    assert list(qfd.loc[qfd["delta_all_ci_includes_zero"], "task"]) == ["t1", "t1"]
    path = write_report(tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph,
                        study_info=StudyInfo("q"))  # fmt: skip
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    rows = [line for line in summary.splitlines() if line.startswith("| base → ")]
    assert len(rows) == 4 and all("\N{EN DASH}" not in row for row in rows)  # every share shown, with its CI
    for row in rows:
        assert (row.count(" ‡") == 2) == ("| t1 |" in row), row  # both shares of a flagged row are marked
    assert summary.count("‡ ΔD_all's 95% CI includes 0") == 1
    page = path.read_text(encoding="utf-8")
    assert 'id="qfd-ci-includes-zero"' in page and "ΔD_all&#39;s 95% CI includes 0" in page
    assert "share of ΔD_all (reference → checkpoint); ‡ ΔD_all's CI includes 0" in page  # the figure's axis label


def test_older_tables_are_read_in_one_sign() -> None:
    """An analysis written before issue 20: headline's loss_pct_base (positive = lost) and a collapse-site row
    naming a gain. Read back, the loss is a negative change and the gain is no site."""
    old_headline = pd.DataFrame(
        {"lineage": ["a"], "loss_pct_base": [80.5], "loss_pct_base_ci_low": [78.0], "loss_pct_base_ci_high": [83.0]}
    )
    old_sites = pd.DataFrame(
        {
            "lineage": ["a", "b"], "parent": ["base", "base"], "child": ["a", "b"], "stage": ["sft", "instruct"],
            "delta": [-0.4, 0.05], "delta_ci_low": [-0.45, 0.02], "delta_ci_high": [-0.35, 0.1],
            "delta_pct_base": [-80.5, 12.3], "delta_pct_base_ci_low": [-83.0, 4.8],
            "delta_pct_base_ci_high": [-78.0, 25.3], "significant": [True, True], "is_loss": [True, False],
            "loss_share": [1.0, np.nan],
        }
    )  # fmt: skip
    tables = report_tables(tables_only(headline=old_headline, collapse_sites=old_sites))
    row = tables.headline.iloc[0]
    assert (row["change_pct_base"], row["change_pct_base_ci_low"], row["change_pct_base_ci_high"]) == (-80.5, -83, -78)
    sites = tables.collapse_sites.set_index("lineage")
    assert list(sites["status"]) == ["collapse site", "gained"]
    assert sites.loc["a", "child"] == "a" and pd.isna(sites.loc["b", "child"]) and np.isnan(sites.loc["b", "delta"])


def test_qfd_figure_keeps_its_scale_when_a_flagged_share_is_huge() -> None:
    """A ΔD_all near 0 (CI includes 0) gives shares like 3500%: they are shown, cut at the axis' edge and written
    out, so the other rows keep a readable scale."""
    from divtrace.report.plots import QFD_SHARE_RANGE, plot_qfd

    qfd = pd.DataFrame(
        {
            "reference": ["base", "base"], "checkpoint": ["x", "y"], "task": ["t", "t"], "metric": ["sbert"] * 2,
            "delta_all": [-0.001, -0.2], "quality_control_share": [-34.0, 0.4], "residual_share": [35.0, 0.6],
            "delta_all_ci_includes_zero": [True, False], "share_outside_unit": [True, False],
        }
    )  # fmt: skip
    svg = plot_qfd(qfd, "sbert")
    assert f"(off scale: quality control {MINUS}3400%, residual 3500%)" in svg
    assert "base → x · t ‡ †" in svg and "base → y · t ‡" not in svg
    assert QFD_SHARE_RANGE == (-1.0, 2.0) and "‡ ΔD_all's CI includes 0; † a share outside [0, 1]" in svg
