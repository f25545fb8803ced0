"""The report stage: index.html (self-contained, escaped, every section) and summary.md, rendered in real chromium.

A realistic study is constructed in code: a base -> sft -> dpo -> rl lineage, an rl-zero branch and the rl
checkpoint sampled again with thinking suppressed; a verifiable task (with verdicts and a ``correct`` subset) and a
creative one; K = 8 outputs per prompt, ``k=N`` subsets for the curves. The real :func:`divtrace.analysis.analyze`
turns the scores into the analysis tables. One prompt's leaf outputs are hostile HTML.

The browser test needs Debian's chromium (``apt-get install -y --no-install-recommends chromium``); it is skipped,
with that command in the reason, when no chromium binary is on PATH.
"""

from __future__ import annotations

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

from divtrace.analysis import analyze
from divtrace.errors import DivtraceError
from divtrace.report import report_tables, write_report
from divtrace.report.html import _cut, _fit_budget, indistinguishable_cells
from divtrace.report.summary_md import render_summary_md
from divtrace.samples import SampleRecord
from divtrace.stats import BootstrapSettings
from divtrace.study.lineage import CheckpointNode, LineageGraph

K = 8
N_PROMPTS = 10
TASKS = ("gsm8k", "poems")
METRICS = ("sbert", "ead")
HOSTILE_OUTPUT = "<script>alert(1)</script>"
HOSTILE_IMG = "<img src=x onerror=\"document.body.dataset.pwned='1'\">"
HOSTILE_PROMPT = '</div><script>document.title="PWNED"</script> What is 2+2?'
CAVEAT = "the base and instruct models are from different families: this is a cross-family comparison, not a lineage"
STUDY_INFO = {
    "name": "constructed <lineage> study",
    "caveat": CAVEAT,
    "description": "A constructed study for the report tests.",
    "tasks": list(TASKS),
    "metrics": list(METRICS),
    "embedder": {"model": "all-MiniLM-L6-v2", "normalize": True},
    "sampling": {"k": K, "temperature": 1.0, "top_p": 1.0, "seed": 1234},
    "checkpoints": [{"name": "base", "model": "quickstart:base"}],
}
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
    assert cells[2].strip("*").startswith(f"{expected['loss_pct_base'].iloc[0]:.1f}% [")
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
            "loss_pct_base": [12.5],
            "loss_pct_base_ci_low": [10.0],
            "loss_pct_base_ci_high": [15.0],
            "is_collapse_site": [True],
            "retained_pct": [87.5],
        }
    )
    text = render_summary_md(headline, study_info={"name": "x"})
    assert "| t | m | **12.5% [10.0, 15.0]** | 87.5% |" in text
    assert "## a\\|b: base → a\\|b" in text


def test_sections_without_data_are_left_out(tmp_path: Path) -> None:
    scores, _, _ = make_study(seed=1)
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base")])
    scores = scores[scores["checkpoint"].isin(["base", "sft"]) & (scores["subset"] == "all")]
    analysis = analyze(scores, None, graph, bootstrap=BootstrapSettings(resamples=100))
    path = write_report(
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info={"name": "tiny"}
    )
    text = path.read_text(encoding="utf-8")
    assert 'id="qfd"' not in text and 'id="thinking"' not in text and 'class="caveat"' not in text
    assert parse(text).svgs["lineage"] == 1
    assert "(outputs not available)" in text  # no samples given: the drill-down still ranks prompts


def test_tables_read_back_from_disk_fill_missing_columns() -> None:
    tables = report_tables(
        {
            "qfd": pd.DataFrame({"checkpoint": ["c"], "quality_control_share": [0.7], "delta_all": [-0.1]}),
            "thinking": pd.DataFrame({"diversity_suppressed": [0.2]}),
        }
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
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info={"name": "olmo3-7b"}
    )
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.index("## Table 1") < text.index("## Per task") < text.index("## Collapse sites")
    lines = text.splitlines()
    think = next(
        i for i, line in enumerate(lines) if line.startswith("| think | base → think-sft → think-dpo → think |")
    )
    minus = "\N{MINUS SIGN}"
    assert lines[think + 1] == f"| ↳ paper | published | {minus}62 | {minus}4 | +4 | 38% | 15 |"
    instruct = next(i for i, line in enumerate(lines) if line.startswith("| instruct |"))
    assert lines[instruct + 1] == f"| ↳ paper | published | {minus}38 | {minus}23 | {minus}5 | 34% | 15 |"
    group = next(i for i, line in enumerate(lines) if line.startswith("| rl-zero (mean) |"))
    assert lines[group + 1] == "| ↳ paper | published | \N{EN DASH} |  |  | 93% | 15 |"
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
        study_info={"name": "my-study"},
    )  # fmt: skip
    assert "↳ paper" not in (tmp_path / "other" / "summary.md").read_text(encoding="utf-8")
    assert 'class="paper"' not in other.read_text(encoding="utf-8")


def test_report_without_table1_says_to_rerun_analyze(tmp_path: Path, study: dict[str, object]) -> None:
    tables = {name: table for name, table in study["analysis"].tables().items() if name != "table1"}
    path = write_report(
        tmp_path, analysis=tables, samples=[], per_prompt_scores=study["scores"], graph=study["graph"],
        study_info={"name": "old"},
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
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info={"name": "x"}
    )
    sentence = "A share outside [0, 1] means ΔD_correct is larger than ΔD_all or of the opposite sign"
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert f"† {sentence}" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| base → rl | gsm8k | sbert |"))
    assert "| \N{MINUS SIGN}0.200 | +0.050 | 125.0% † | \N{MINUS SIGN}25.0% † | 6 / 6 |" in row
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
        tmp_path, analysis=analysis, samples=[], per_prompt_scores=scores, graph=graph, study_info={"name": "t"}
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
