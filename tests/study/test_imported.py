"""``divtrace analyze`` and ``divtrace report`` on samples generated elsewhere (lm-eval files, plain JSONL).

The lm-eval files are written in lm-eval's real layout (see tests/samples/test_importers.py); the base checkpoint's
outputs are varied and half of them wrong, the "sft" checkpoint's are one correct answer repeated, so diversity must
drop along base -> sft, and verification must see the difference in accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from divtrace.cli import app
from divtrace.errors import DivtraceError
from divtrace.study import RecordedSampling, load_study
from divtrace.study.imported import SampleSource, parse_lineage
from tests.samples.test_importers import write_lmeval

K = 4
N_DOCS = 6
OPENINGS = ("First she counts", "Let us add", "Adding the two days", "The total is easy")
FRUIT = ("apples", "pears", "plums", "figs")


def gsm8k_line(doc_id: int, outputs: list[str]) -> dict:
    """One lm-eval gsm8k sample line (the document is an openai/gsm8k row: question, answer ending in #### N)."""
    question = f"Natalia sold {doc_id + 48} clips in April and {doc_id} in May. How many clips did she sell?"
    context = f"Question: {question}\nAnswer:"
    return {
        "doc_id": doc_id,
        "doc": {"question": question, "answer": f"She sold {doc_id + 48} + {doc_id}. #### {2 * doc_id + 48}"},
        "target": f"She sold {doc_id + 48} + {doc_id}. #### {2 * doc_id + 48}",
        "arguments": {"gen_args_0": {"arg_0": context, "arg_1": {"until": ["Question:"], "do_sample": True}}},
        "resps": [outputs],
        "filtered_resps": [outputs],
        "filter": "strict-match",
    }


def base_outputs(doc_id: int) -> list[str]:
    """Varied outputs; samples 0 and 1 are right, 2 and 3 wrong."""
    answer = 2 * doc_id + 48
    return [
        f"{OPENINGS[k]} {FRUIT[k]} and {doc_id} baskets on day {k}, giving #### {answer if k < 2 else answer + k}"
        for k in range(K)
    ]


def sft_outputs(doc_id: int) -> list[str]:
    """One correct answer, K times."""
    return [f"She sold {doc_id + 48} + {doc_id} = {2 * doc_id + 48} clips. #### {2 * doc_id + 48}"] * K


@pytest.fixture
def lmeval_files(tmp_path: Path) -> tuple[Path, Path]:
    base = write_lmeval(
        tmp_path / "lm-eval", "org__base-7b", "gsm8k", [gsm8k_line(i, base_outputs(i)) for i in range(N_DOCS)]
    )
    sft = write_lmeval(
        tmp_path / "lm-eval", "org__sft-7b", "gsm8k", [gsm8k_line(i, sft_outputs(i)) for i in range(N_DOCS)]
    )
    return base, sft


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})  # no wrapped messages
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def test_parse_lineage_chains_stages_and_variants() -> None:
    nodes = {c.name: c for c in parse_lineage(["base>sft>dpo:preference>rl", "base>zero:rl-zero"], ["rl-off=rl"])}
    assert [(n.name, n.stage, n.parent) for n in nodes.values() if n.variant_of is None] == [
        ("base", "base", None),
        ("sft", "sft", "base"),
        ("dpo", "preference", "sft"),
        ("rl", "rl", "dpo"),
        ("zero", "rl-zero", "base"),
    ]
    assert (nodes["rl-off"].variant_of, nodes["rl-off"].thinking, nodes["rl-off"].parent) == ("rl", "suppressed", None)


@pytest.mark.parametrize(
    ("chains", "variants", "message"),
    [
        (["a>b", "c>b"], [], "has parent"),
        (["a>b:sft", "a>b:dpo"], [], "two stage labels"),
        (["a>>b"], [], "is not a checkpoint name"),
        (["a>b"], ["x"], "expected NAME=OF"),
        (["a>b"], ["x=c"], "not a checkpoint of the lineage"),
        ([], [], "give the lineage"),
    ],
)
def test_parse_lineage_errors(chains: list[str], variants: list[str], message: str) -> None:
    with pytest.raises(DivtraceError, match=message):
        parse_lineage(chains, variants)


def test_sample_source_labels(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("")
    assert SampleSource.parse(f"sft={path}") == SampleSource(path, "sft")
    assert SampleSource.parse(str(path)) == SampleSource(path)
    odd = tmp_path / "a=b.jsonl"
    odd.write_text("")
    assert SampleSource.parse(str(odd)) == SampleSource(odd)  # an existing path with '=' stays a path


def test_analyze_lmeval_samples_end_to_end(lmeval_files: tuple[Path, Path], tmp_path: Path) -> None:
    base, sft = lmeval_files
    run = tmp_path / "run"
    code, output = invoke("analyze", f"base={base}", f"sft={sft}", "--lineage", "base>sft", "--out", str(run))
    assert code == 0, output

    verdicts = pd.read_parquet(run / "verdicts" / "base" / "gsm8k.parquet")
    assert len(verdicts) == N_DOCS * K
    assert verdicts.groupby("sample_index")["correct"].all().tolist() == [True, True, False, False]
    assert pd.read_parquet(run / "verdicts" / "sft" / "gsm8k.parquet")["correct"].all()

    retained = pd.read_parquet(run / "analysis" / "retained.parquet").set_index(["checkpoint", "metric"])
    for metric in ("ead", "sbert"):
        assert retained.loc[("sft", metric), "retained"] < 0.5  # one answer repeated: diversity collapsed
        assert retained.loc[("base", metric), "retained"] == pytest.approx(1.0)
    sites = pd.read_parquet(run / "analysis" / "collapse_sites.parquet")
    assert set(sites["child"]) == {"sft"}
    qfd = pd.read_parquet(run / "analysis" / "qfd.parquet")
    assert set(qfd["checkpoint"]) == {"sft"} and (qfd["task"] == "gsm8k").all()
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "base" in html and "sft" in html and "<svg" in html
    assert "collapse" in (run / "report" / "summary.md").read_text(encoding="utf-8").lower()
    assert "where diversity collapses" in output

    outputs = sorted(p for p in run.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in outputs}
    code, output = invoke("analyze", f"base={base}", f"sft={sft}", "--lineage", "base>sft", "--out", str(run))
    assert code == 0, output
    for stage in ("verify", "score", "analyze", "report"):
        assert f"{stage}: ran 0" in output
    assert {p: p.stat().st_mtime_ns for p in outputs} == before  # the second run wrote nothing

    (run / "report" / "_complete.json").unlink()
    (run / "report" / "index.html").unlink()
    code, output = invoke("report", str(run))
    assert code == 0, output
    assert "report: ran 1" in output and (run / "report" / "index.html").exists()


def test_analyze_plain_jsonl_with_checkpoint_column(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parents[2] / "examples" / "quickstart_samples.jsonl"
    run = tmp_path / "run"
    chain = "gemma-3-270m>smollm2-135m-instruct:instruct"
    code, output = invoke("analyze", str(samples), "--lineage", chain, "--out", str(run), "--no-report")
    assert code == 0, output
    assert not (run / "report").exists()
    study = (run / "study.yaml").read_text()
    assert "stage: instruct" in study and "model: imported" in study
    means = pd.read_parquet(run / "analysis" / "checkpoint_means.parquet")
    assert set(means["checkpoint"]) == {"gemma-3-270m", "smollm2-135m-instruct"}
    assert set(means["metric"]) == {"ead", "sbert", "vendi"}
    assert not (run / "verdicts").exists()  # open-ended: nothing to verify


def test_analyze_errors_name_what_is_wrong(lmeval_files: tuple[Path, Path], tmp_path: Path) -> None:
    base, sft = lmeval_files
    code, output = invoke("analyze", str(base), str(sft), "--lineage", "base>sft", "--out", str(tmp_path / "r"))
    assert code == 2
    assert "no samples for checkpoint(s) ['base', 'sft']" in output and "org__base-7b" in output

    code, output = invoke("analyze", f"base={base}", f"base={sft}", "--lineage", "base>sft", "--out", str(tmp_path))
    assert code == 2 and "is also in" in output

    study = tmp_path / "study.yaml"
    study.write_text(
        json.dumps({"name": "s", "checkpoints": [{"name": "base", "model": "m"}], "tasks": [{"name": "gsm8k"}]})
    )
    code, output = invoke("analyze", str(base), "--study", str(study), "--lineage", "a>b", "--out", str(tmp_path / "r"))
    assert code == 2 and "not both" in output

    code, output = invoke("report", str(tmp_path / "nothing"))
    assert code == 2 and "study.yaml: not found; is" in output


# --- lighteval details, the recorded sampling, tasks named by the harness -------------------------------------


def gsm8k_details(root: Path, model: str, outputs_of) -> Path:  # type: ignore[no-untyped-def]
    """lighteval GSM8K details of N_DOCS documents (``gsm8k_prompt``: the dataset answer is ``choices[0]``)."""
    from tests.samples.test_importers import lighteval_doc, lighteval_response, write_lighteval

    rows = []
    for i in range(N_DOCS):
        line = gsm8k_line(i, [])
        doc = {**lighteval_doc(i), "query": line["arguments"]["gen_args_0"]["arg_0"], "choices": [f" {line['target']}"]}
        response = {**lighteval_response(i), "text": outputs_of(i), "text_post_processed": outputs_of(i)}
        response["output_tokens"] = [[1] for _ in range(K)]
        rows.append({"doc": doc, "model_response": response, "metric": {"extractive_match": 1.0}})
    return write_lighteval(root, model, rows)


def test_analyze_lighteval_gsm8k_verifies_and_reports_the_recorded_sampling(tmp_path: Path) -> None:
    base = gsm8k_details(tmp_path / "le", "base-7b", base_outputs)
    sft = gsm8k_details(tmp_path / "le", "sft-7b", sft_outputs)
    renamed = tmp_path / "sft-details.bin"  # the format comes from the content, not the name
    renamed.write_bytes(sft.read_bytes())
    run = tmp_path / "run"
    code, output = invoke("analyze", f"base={base}", f"sft={renamed}", "--lineage", "base>sft", "--out", str(run))
    assert code == 0, output

    [base_verdicts] = (run / "verdicts" / "base").glob("*.parquet")
    verdicts = pd.read_parquet(base_verdicts)
    assert set(verdicts["task"]) == {"lighteval|gsm8k|0"}  # the label as logged
    assert verdicts.groupby("sample_index")["correct"].all().tolist() == [True, True, False, False]
    qfd = pd.read_parquet(run / "analysis" / "qfd.parquet")
    assert set(qfd["task"]) == {"lighteval|gsm8k|0"}

    study = load_study(str(run / "study.yaml"))
    [task] = study.tasks
    assert (task.name, task.verify_as) == ("lighteval|gsm8k|0", "gsm8k")
    assert isinstance(study.sampling, RecordedSampling)
    assert (study.sampling.k, study.sampling.temperature, study.sampling.max_new_tokens) == (K, "unknown", 256)
    assert study.sampling.source == "lighteval" and study.sampling.top_p == "unknown"
    assert "temperature: 0.6" not in (run / "study.yaml").read_text()
    summary = (run / "report" / "summary.md").read_text(encoding="utf-8")
    assert "**Sampling:** k = 4; temperature = unknown; top_p = unknown; max_new_tokens = 256" in summary
    assert "as the imported records carry it (lighteval" in summary
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "k = 4; temperature = unknown" in html and "k = 16" not in html


def test_recorded_sampling_is_each_setting_the_records_share_or_says_mixed(tmp_path: Path) -> None:
    from divtrace.study.imported import imported_study, read_sources
    from tests.samples.test_importers import GEN_KWARGS, lmeval_line

    cool = [lmeval_line(i) for i in range(3)]  # temperature 0.8, max_gen_toks 256
    for line in cool:
        line["arguments"]["gen_args_0"]["arg_1"] = {**GEN_KWARGS, "temperature": 0.6, "top_p": 0.95}
    base = write_lmeval(tmp_path / "a", "base", "gsm8k_cot", [lmeval_line(i) for i in range(3)])
    sft = write_lmeval(tmp_path / "b", "sft", "gsm8k_cot", cool)
    records, _ = read_sources([SampleSource(base), SampleSource(sft)])
    same = imported_study(parse_lineage(["base"]), [r for r in records if r.checkpoint == "base"]).sampling
    assert same.model_dump() == {
        "from_records": True, "source": "lm-eval", "k": 4, "temperature": 0.8, "top_p": "unknown",
        "max_new_tokens": 256, "requested": True,
    }  # fmt: skip
    study = imported_study(parse_lineage(["base>sft"]), records)
    assert isinstance(study.sampling, RecordedSampling)
    assert (study.sampling.temperature, study.sampling.top_p) == ("mixed: 0.6, 0.8", "mixed: 0.95, unknown")
    frozen = tmp_path / "study.yaml"
    frozen.write_text(study.to_yaml())
    assert load_study(str(frozen)) == study  # the recorded sampling survives study.yaml
    assert study.tasks[0].verify_as == "gsm8k"


def test_analyze_says_which_tasks_cannot_be_verified_and_why(tmp_path: Path) -> None:
    from divtrace.executors.driver import run_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.runs.layout import RunLayout
    from divtrace.study.imported import import_samples, imported_study, read_sources
    from divtrace.study.planned import run_tasks
    from divtrace.study.stages import verify_stage

    path = write_lmeval(tmp_path / "in", "base", "word_problems", [gsm8k_line(i, base_outputs(i)) for i in range(3)])
    records, _ = read_sources([SampleSource(path)], fmt="lm-eval")
    checkpoints = parse_lineage(["base"])

    study = imported_study(checkpoints, records)
    layout = RunLayout(tmp_path / "run")
    import_samples(study, records, layout)
    [report] = run_stages([verify_stage(study, run_tasks(study))], layout, LocalExecutor())
    assert report.ran == [] and len(report.notes) == 1
    note = report.notes[0]
    assert "task word_problems: not verified" in note and "--task-map word_problems=TASK" in note

    mapped = imported_study(checkpoints, records, task_map={"word_problems": "gsm8k"})
    assert mapped.tasks[0].verify_as == "gsm8k"
    layout = RunLayout(tmp_path / "mapped")
    import_samples(mapped, records, layout)
    [report] = run_stages([verify_stage(mapped, run_tasks(mapped))], layout, LocalExecutor())
    assert report.ran == ["base/word_problems"] and report.notes == []
    verdicts = pd.read_parquet(layout.verdicts_file("base", "word_problems"))
    assert verdicts.groupby("sample_index")["correct"].all().tolist() == [True, True, False, False]


def test_analyze_reads_gzip_jsonl_as_the_plain_file(lmeval_files: tuple[Path, Path], tmp_path: Path) -> None:
    import gzip

    base, sft = lmeval_files
    runs = {}
    for kind in ("plain", "gzip"):
        inputs = []
        for name, path in (("base", base), ("sft", sft)):
            if kind == "gzip":  # samples_gsm8k_<time>.jsonl.gz: lm-eval's name, which gives the task
                compressed = tmp_path / "gz" / name / (path.name + ".gz")
                compressed.parent.mkdir(parents=True)
                compressed.write_bytes(gzip.compress(path.read_bytes()))
                path = compressed
            inputs.append(f"{name}={path}")
        runs[kind] = tmp_path / f"run-{kind}"
        code, output = invoke("analyze", *inputs, "--lineage", "base>sft", "--out", str(runs[kind]), "--no-report")
        assert code == 0, output
    for table in ("verdicts/sft/gsm8k.parquet", "scores/base/gsm8k.parquet", "analysis/edges.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(runs["plain"] / table), pd.read_parquet(runs["gzip"] / table))


def test_analyze_cuts_mixed_k_to_the_common_k_and_records_it(tmp_path: Path) -> None:
    """Base's prompts 1 and 3 have 6 outputs, the others 4: every number equals that of the samples cut by hand."""

    def base_line(doc_id: int, k: int) -> dict:
        extra = [f"A longer road, {doc_id} more words on day {i}. #### {i}" for i in range(k - K)]
        return gsm8k_line(doc_id, base_outputs(doc_id) + extra)

    sft = write_lmeval(tmp_path / "in", "org__sft-7b", "gsm8k", [gsm8k_line(i, sft_outputs(i)) for i in range(N_DOCS)])
    mixed = write_lmeval(
        tmp_path / "in", "org__base-7b", "gsm8k", [base_line(i, 6 if i in (1, 3) else K) for i in range(N_DOCS)]
    )
    by_hand = write_lmeval(tmp_path / "cut", "org__base-7b", "gsm8k", [base_line(i, K) for i in range(N_DOCS)])
    runs = {"mixed": tmp_path / "run", "by hand": tmp_path / "by-hand"}
    code, output = invoke(
        "analyze", f"base={mixed}", f"sft={sft}", "--lineage", "base>sft", "--out", str(runs["mixed"])
    )
    assert code == 0, output
    assert (
        "warning: base/gsm8k has prompts with different K: 4 (4 prompts), 6 (2 prompts); prompts with more than 4: "
        "'1' (K=6), '3' (K=6); every prompt of the cell is cut to its first 4 outputs"
    ) in " ".join(output.split())  # the note is wrapped off a terminal
    settings = json.loads((runs["mixed"] / "analysis" / "analysis_settings.json").read_text())
    assert settings["mixed_k"]["cells"] == [
        {"checkpoint": "base", "task": "gsm8k", "common_k": 4, "prompts_per_k": {"4": 4, "6": 2},
         "first_cut": [["1", 6], ["3", 6]]}
    ]  # fmt: skip
    assert "smallest K" in settings["mixed_k"]["rule"]
    assert "cut to a common K = base/gsm8k to 4" in (runs["mixed"] / "report" / "summary.md").read_text()

    code, output = invoke(
        "analyze", f"base={by_hand}", f"sft={sft}", "--lineage", "base>sft", "--out", str(runs["by hand"])
    )
    assert code == 0, output
    assert "warning" not in output
    by_hand_settings = json.loads((runs["by hand"] / "analysis" / "analysis_settings.json").read_text())
    assert by_hand_settings["mixed_k"]["cells"] == []
    for table in ("verdicts/base/gsm8k", "scores/base/gsm8k", "analysis/passk", "analysis/edges", "analysis/curves"):
        expected = pd.read_parquet(runs["by hand"] / f"{table}.parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(runs["mixed"] / f"{table}.parquet"), expected)
    assert set(pd.read_parquet(runs["mixed"] / "scores/base/gsm8k.parquet").query("subset == 'all'")["n_outputs"]) == {
        K
    }

    strict = tmp_path / "strict"
    code, output = invoke(
        "analyze", f"base={mixed}", f"sft={sft}", "--lineage", "base>sft", "--strict-k", "--out", str(strict)
    )
    assert code == 2
    assert (
        "mixed K refused (--strict-k): base/gsm8k has prompts with different K: 4 (4 prompts), 6 (2 prompts)" in output
    )
    assert not strict.exists()
