"""`divtrace score` and `divtrace.score` end to end: real files, the packaged embedder, the real CLI process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import divtrace
from divtrace.score.metrics import ScoringContext, create_metric
from divtrace.score.metrics.embedding_cache import EmbeddingCache
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.settings import EmbedderSettings

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart_samples.jsonl"

BASE = [
    [
        "The lighthouse keeper watched the storm roll in.",
        "Waves broke on the rocks below the old tower.",
        "A ship's horn sounded somewhere in the fog.",
        "She lit the lamp as the sun went down.",
    ],
    [
        "Rain smells like wet earth and cut grass.",
        "Petrichor rises from the warm pavement.",
        "The air turns sweet and metallic before a storm.",
        "It smells like my grandmother's garden.",
    ],
    [
        "Practice every day and read other people's code.",
        "Write tests before you fix a bug.",
        "Learn to use a debugger early.",
        "Ask questions; nobody knows everything.",
    ],
]
COLLAPSED = [[group[0]] * 3 + [group[1]] for group in BASE]


def write_jsonl(path: Path, groups: list[list[str]], **extra: str) -> Path:
    with path.open("w") as handle:
        for i, outputs in enumerate(groups):
            handle.write(
                json.dumps({"prompt_id": f"p{i}", "prompt": f"prompt {i}", "outputs": outputs, **extra}) + "\n"
            )
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DIVTRACE_CACHE_DIR": str(tmp_path / "cache")}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "divtrace.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_cli_json_summary_ranks_the_collapsed_checkpoint_lower(tmp_path: Path, env: dict[str, str]) -> None:
    base = write_jsonl(tmp_path / "base.jsonl", BASE)
    tuned = write_jsonl(tmp_path / "tuned.jsonl", COLLAPSED)
    out = tmp_path / "scores"
    proc = run_cli("score", str(base), str(tuned), "--format", "json", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    summary = pd.DataFrame(json.loads(proc.stdout))
    assert set(summary["metric"]) == {"ead", "sbert", "vendi"}
    assert set(summary["checkpoint"]) == {"base", "tuned"}  # labelled by file name
    means = summary.pivot(index="metric", columns="checkpoint", values="mean")
    assert (means["tuned"] < means["base"]).all()
    assert ((summary["ci_low"] <= summary["mean"]) & (summary["mean"] <= summary["ci_high"])).all()

    per_prompt = pd.read_parquet(out / "per_prompt.parquet")
    assert len(per_prompt) == 2 * 3 * 3
    ead = per_prompt[(per_prompt.metric == "ead") & (per_prompt.checkpoint == "tuned")]["value"].to_numpy()
    np.testing.assert_allclose(ead, create_metric("ead").score_groups(COLLAPSED, ScoringContext()), atol=1e-12)
    assert (out / "summary.csv").exists() and (out / "across_input.parquet").exists()
    settings = json.loads((out / "score_settings.json").read_text())
    assert settings["settings"]["bootstrap"]["seed"] == 1234
    assert settings["settings"]["metrics"]["ead"]["vocab_size"] == 50257
    assert settings["settings"]["embedder"]["cache_key"]


@pytest.mark.slow
def test_cli_table_on_the_bundled_real_outputs_with_four_metrics(
    tmp_path: Path, env: dict[str, str], tiny_nli_model: Path
) -> None:
    proc = run_cli("score", str(EXAMPLE), "--nli-model", str(tiny_nli_model), env=env)
    assert proc.returncode == 0, proc.stderr
    for metric in ("ead", "sbert", "vendi", "nli"):
        assert metric in proc.stdout
    assert "95% bootstrap CI" in proc.stdout


def test_cli_unloadable_nli_model_fails_before_any_work(tmp_path: Path, env: dict[str, str]) -> None:
    base = write_jsonl(tmp_path / "base.jsonl", BASE)
    proc = run_cli("score", str(base), "--nli-model", str(tmp_path / "missing-nli"), env=env)
    assert proc.returncode == 2
    assert "missing-nli" in proc.stderr
    assert not (tmp_path / "cache" / "embeddings.sqlite3").exists()  # nothing was embedded


def test_cli_bad_input_names_file_line_and_field(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt_id": "a", "prompt": "p", "outputs": ["x y", "y z"]})
        + "\n"
        + json.dumps({"prompt_id": "b", "prompt": "p", "outputs": ["only one"]})
        + "\n"
    )
    proc = run_cli("score", str(bad), "--metrics", "ead", env=env)
    assert proc.returncode == 2
    assert "bad.jsonl" in proc.stderr and "line 2" in proc.stderr and "outputs" in proc.stderr

    skipped = run_cli("score", str(bad), "--metrics", "ead", "--skip-invalid", "--format", "csv", env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "line 2" in skipped.stderr
    assert pd.read_csv(pd.io.common.StringIO(skipped.stdout))["n_prompts"].tolist() == [1]


def test_api_scores_records_and_is_deterministic(tmp_path: Path) -> None:
    records = [
        divtrace.SampleRecord(prompt_id=f"p{i}", prompt="q", outputs=g, checkpoint="c", task="t")
        for i, g in enumerate(BASE)
    ]
    store = EmbeddingStore(EmbedderSettings(), cache=EmbeddingCache(tmp_path / "c.sqlite3"))
    first = divtrace.score(records, metrics=["ead", "sbert", "vendi", "distinct"], embedder=store)
    second = divtrace.score(records, metrics=["ead", "sbert", "vendi", "distinct"], embedder=store)
    pd.testing.assert_frame_equal(first.summary, second.summary)
    assert second.embedding_stats["encoded"] == first.embedding_stats["encoded"] == 12
    vendi = first.summary.set_index("metric").loc["vendi"]
    assert 1.0 <= vendi["mean"] <= 4.0
    across = first.across_input.set_index("metric")
    assert across.loc["sbert", "n_prompts"] == 3


def test_api_rejects_records_with_one_output() -> None:
    record = divtrace.SampleRecord(prompt_id="p", prompt="q", outputs=["just one"])
    with pytest.raises(divtrace.DivtraceError, match="fewer than 2"):
        divtrace.score([record], metrics=["ead"])


def test_cli_refuses_the_generators_tokenizer_before_any_work(tmp_path: Path, env: dict[str, str]) -> None:
    # Sample files name no generator: EAD cannot take "each checkpoint's own" V from them, and says so up front.
    base = write_jsonl(tmp_path / "base.jsonl", BASE)
    proc = run_cli("score", str(base), "--metrics", "ead", "--tokenizer", "generator", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tokenizer 'generator' needs each checkpoint's generator" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_cli_reads_gzip_jsonl_as_the_plain_file(tmp_path: Path, env: dict[str, str]) -> None:
    import gzip

    base = write_jsonl(tmp_path / "base.jsonl", BASE)
    compressed = tmp_path / "gz" / "base.jsonl.gz"  # the checkpoint is still "base"
    compressed.parent.mkdir()
    compressed.write_bytes(gzip.compress(base.read_bytes()))
    plain = run_cli("score", str(base), "--metrics", "ead,distinct", "--format", "json", env=env)
    assert plain.returncode == 0, plain.stderr
    for args in ([str(compressed)], [str(compressed), "--input-format", "jsonl"], [str(compressed.parent)]):
        read = run_cli("score", *args, "--metrics", "ead,distinct", "--format", "json", env=env)
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout) == json.loads(plain.stdout)
    api = divtrace.score(compressed, metrics=["ead", "distinct"])
    pd.testing.assert_frame_equal(api.summary, divtrace.score(base, metrics=["ead", "distinct"]).summary)


def test_mixed_k_is_scored_at_the_common_k_or_refused(tmp_path: Path, env: dict[str, str]) -> None:
    # prompt p1 has 6 outputs, the others 4: the cell is scored on the first 4 outputs of every prompt
    longer = [BASE[0], BASE[1] + ["Thunder rolls over the hills.", "Fresh bread, somehow."], BASE[2]]
    (tmp_path / "mixed").mkdir()
    mixed = write_jsonl(tmp_path / "mixed" / "base.jsonl", longer)
    by_hand = write_jsonl(tmp_path / "base.jsonl", BASE)
    metrics = "ead,distinct,vendi"
    expected = run_cli("score", str(by_hand), "--metrics", metrics, "--format", "json", env=env)
    scored = run_cli(
        "score", str(mixed), "--metrics", metrics, "--format", "json", "--out", str(tmp_path / "o"), env=env
    )
    assert scored.returncode == 0 and expected.returncode == 0, scored.stderr + expected.stderr
    assert json.loads(scored.stdout) == json.loads(expected.stdout)
    assert (
        "warning: base/default has prompts with different K: 4 (2 prompts), 6 (1 prompt); prompts with more than 4: "
        "'p1' (K=6); every prompt of the cell is cut to its first 4 outputs"
    ) in " ".join(scored.stderr.split())
    settings = json.loads((tmp_path / "o" / "score_settings.json").read_text())["settings"]
    assert [(c["checkpoint"], c["common_k"], c["prompts_per_k"]) for c in settings["mixed_k"]["cells"]] == [
        ("base", 4, {"4": 2, "6": 1})
    ]
    strict = run_cli("score", str(mixed), "--metrics", metrics, "--strict-k", env=env)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert strict.stderr.startswith("error: mixed K refused (--strict-k): base/default has prompts with different K")

    with pytest.warns(divtrace.errors.DivtraceWarning, match="base/default has prompts with different K"):
        api = divtrace.score(mixed, metrics=["ead", "distinct"])
    pd.testing.assert_frame_equal(api.summary, divtrace.score(by_hand, metrics=["ead", "distinct"]).summary)
    with pytest.raises(divtrace.DivtraceError, match="mixed K refused"):
        divtrace.score(mixed, metrics=["ead"], strict_k=True)
