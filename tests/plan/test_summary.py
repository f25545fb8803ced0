"""The dry-run plan summary: rates with provenance, per-checkpoint subtotals that add up, exact totals."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from divtrace.generate.models import QUICKSTART_MODELS
from divtrace.plan.rows import plan_study, plan_without_data
from divtrace.plan.summary import FRAME_COLUMNS, PlanSummary, batched_tokens, checkpoint_device, summarize_plan
from divtrace.plan.throughput import (
    QUICKSTART_LOAD_S,
    RATE_ROWS,
    THROUGHPUTS,
    Throughput,
    cpu_slowdown,
    model_parameters,
    rate_for,
    throughput_table,
)
from divtrace.progress import format_duration
from divtrace.runs.layout import RunLayout
from divtrace.study import CheckpointSpec, load_study, small_quickstart_study
from divtrace.study.planned import plan_tasks
from tests.olmo_study import OLMO_INSTRUCT_STUDY


def starter(tmp_path: Path) -> PlanSummary:
    path = tmp_path / "study.yaml"
    path.write_text(OLMO_INSTRUCT_STUDY, encoding="utf-8")
    study = load_study(path)
    return summarize_plan(study, plan_without_data(study), cuda_available=False, slowdown=1.0)


def assert_adds_up(summary: PlanSummary) -> None:
    for subtotal in summary.checkpoints:
        own = [e for e in summary.rows if e.row.checkpoint == subtotal.checkpoint]
        assert subtotal.samples == sum(e.row.samples for e in own)
        assert subtotal.max_tokens == sum(e.row.max_tokens for e in own)
        assert subtotal.samples_to_do == sum(e.row.samples for e in own if not e.row.done)
        assert subtotal.seconds == pytest.approx(sum(e.seconds for e in own))
    assert summary.samples == sum(e.row.samples for e in summary.rows)
    assert summary.max_tokens == sum(e.row.max_tokens for e in summary.rows)
    assert summary.seconds == pytest.approx(sum(c.seconds for c in summary.checkpoints))


def test_model_size_from_packaged_models_and_names() -> None:
    assert model_parameters("quickstart:gemma-3-270m") == 270e6
    assert model_parameters("quickstart:smollm2-135m-instruct") == 135e6
    assert model_parameters("allenai/Olmo-3-1025-7B") == 7e9
    assert model_parameters("allenai/Olmo-3.1-7B-RL-Zero-Math") == 7e9
    assert model_parameters("Qwen/Qwen2.5-0.5B-Instruct") == 0.5e9
    assert model_parameters("HuggingFaceTB/SmolLM2-135M") == 135e6
    assert model_parameters("my-finetune") is None
    assert model_parameters("quickstart:unknown") is None


def test_rate_provenance() -> None:
    exact = rate_for("transformers", "cpu", "quickstart:gemma-3-270m")  # a real run's rate wins over a benchmark's
    assert exact.measured and exact.tokens_per_s == 161.7
    assert exact.label == "162 tok/s (measured: divtrace run quickstart, 2 CPU cores)"
    bench = rate_for("transformers", "cpu", "quickstart:gemma-3-270m", THROUGHPUTS[2:])
    assert bench.label == "48 tok/s (measured: bench_generate.py, 2 CPU cores)"
    vllm_cpu = rate_for("vllm", "cpu", "quickstart:smollm2-135m-instruct")
    assert vllm_cpu.measured and vllm_cpu.source == "measured: bench_vllm.py, 2 CPU cores"
    near = rate_for("transformers", "cpu", "HuggingFaceTB/SmolLM2-135M")  # same size as a measured model
    assert near.measured and near.tokens_per_s == 60.2 and "quickstart:smollm2-135m-instruct" in near.explanation
    gpu = rate_for("vllm", "gpu", "allenai/Olmo-3-7B-Instruct")
    assert not gpu.measured and gpu.label == "2,500 tok/s (assumed)"
    assert gpu.explanation.startswith("no measured rate for 7B on vllm/gpu; assumed 2,500 tok/s")
    scaled = rate_for("transformers", "cpu", "allenai/Olmo-3-7B-Instruct")
    assert not scaled.measured and scaled.tokens_per_s == pytest.approx(161.7 * 270e6 / 7e9)
    assert scaled.explanation.startswith("no measured rate for 7B on transformers/cpu; assumed 6.2 tok/s")
    unknown = rate_for("transformers", "cpu", "my-finetune")
    assert not unknown.measured and "no measured rate for my-finetune (unknown size)" in unknown.explanation
    with pytest.raises(ValueError, match="no throughput entry"):
        rate_for("transformers", "tpu", "m")
    only_assumed = tuple(e for e in THROUGHPUTS if not e.measured)
    assert not rate_for("transformers", "cpu", "quickstart:gemma-3-270m", only_assumed).measured
    custom = (Throughput("openai", "server", 42.0, "measured: benchmarks/results/x.json", "a run", model="served"),)
    assert rate_for("openai", "server", "served", custom).tokens_per_s == 42.0


def test_checkpoint_device() -> None:
    assert checkpoint_device(CheckpointSpec(name="a", model="m"), cuda_available=False) == "cpu"
    assert checkpoint_device(CheckpointSpec(name="a", model="m"), cuda_available=True) == "gpu"
    assert checkpoint_device(CheckpointSpec(name="a", model="m", options={"device": "cpu"}), True) == "cpu"
    assert checkpoint_device(CheckpointSpec(name="a", model="m", backend="vllm"), False) == "gpu"
    vllm_cpu = CheckpointSpec(name="a", model="m", backend="vllm", options={"device": "cpu"})
    assert checkpoint_device(vllm_cpu, True) == "cpu"
    assert checkpoint_device(CheckpointSpec(name="a", model="m", backend="openai"), True) == "server"


def test_starter_study_says_its_7b_rates_are_assumed(tmp_path: Path) -> None:
    summary = starter(tmp_path)
    assert [c.checkpoint for c in summary.checkpoints] == ["base", "sft", "dpo"]
    for subtotal in summary.checkpoints:
        assert not subtotal.rate.measured and subtotal.rate.label.endswith("(assumed)")
        assert subtotal.device == "cpu" and subtotal.tasks == 2
    assert not summary.all_measured
    assert any(n.startswith("no measured rate for 7B on transformers/cpu; assumed 6.2 tok/s") for n in summary.notes)
    assert len(summary.notes) == 2  # one explanation for the three checkpoints, then the upper-bound caveat
    on_gpu = summarize_plan(load_study(tmp_path / "study.yaml"), plan_without_data(load_study(tmp_path / "study.yaml")),
                            cuda_available=True, slowdown=1.0)  # fmt: skip
    assert on_gpu.notes[0].startswith("no measured rate for 7B on transformers/gpu; assumed 300 tok/s")
    assert on_gpu.gpu_hours == pytest.approx(on_gpu.seconds / 3600)
    assert_adds_up(summary)


def test_quickstart_plan_uses_measured_rates_with_their_files(tmp_path: Path) -> None:
    study = load_study("quickstart")
    rows = plan_study(study, RunLayout(tmp_path), plan_tasks(study))
    summary = summarize_plan(study, rows, cuda_available=False, slowdown=1.0)
    labels = {c.checkpoint: c.rate.label for c in summary.checkpoints}
    # Each checkpoint of the shipped lineage is estimated as its base model, gemma-3-270m.
    measured = "162 tok/s (measured: divtrace run quickstart, 2 CPU cores)"
    assert labels == {name: measured for name in ("base", "sft", "dpo")}
    assert summary.all_measured and summary.gpu_hours == 0
    assert summary.notes == (summary.notes[-1],)  # only the upper-bound caveat: nothing assumed
    for estimate in summary.rows:
        assert estimate.seconds == estimate.row.max_tokens / estimate.rate.tokens_per_s
    assert_adds_up(summary)

    # A finished row costs nothing and leaves its checkpoint partly done.
    first = summary.rows[0].row
    partial = summarize_plan(study, [replace(first, done=True), *rows[1:]], cuda_available=False, slowdown=1.0)
    subtotal = partial.checkpoints[0]
    assert partial.rows[0].seconds == 0 and subtotal.status == "partly done"
    assert subtotal.samples == summary.checkpoints[0].samples
    assert subtotal.samples_to_do == summary.checkpoints[0].samples - first.samples
    assert partial.samples_to_do == summary.samples_to_do - first.samples
    assert_adds_up(partial)


def test_olmo3_totals_exact_with_a_subtotal_per_checkpoint() -> None:
    olmo = load_study("olmo3-7b")
    summary = summarize_plan(olmo, plan_without_data(olmo), cuda_available=False, slowdown=1.0)
    assert len(summary.rows) == 16 * 15 and len(summary.checkpoints) == 16
    # 16 checkpoints x K=16 x the 15 tasks' N (500 x 13 + 164 + 479 = 7,143: IFEval and TruthfulQA at the study's 500)
    assert summary.samples == summary.samples_to_do == 1_828_608
    # per checkpoint and sample: 32768 x (500 x 11 + 164 + 479) + 2048 x 500 + 512 x 500 = 202,573,824
    assert summary.max_tokens == summary.max_tokens_to_do == 51_858_898_944
    for subtotal in summary.checkpoints:
        assert subtotal.samples == 7_143 * 16 and subtotal.max_tokens == 202_573_824 * 16
        assert subtotal.device == "gpu" and subtotal.rate.label == "2,500 tok/s (assumed)"
    assert summary.seconds == pytest.approx(51_858_898_944 / 2500)
    assert summary.gpu_hours == pytest.approx(51_858_898_944 / 2500 / 3600)  # one GPU per replica
    assert summary.notes[0].startswith("no measured rate for 7B on vllm/gpu; assumed 2,500 tok/s")
    assert_adds_up(summary)


def test_frame_has_rows_subtotals_and_a_total(tmp_path: Path) -> None:
    summary = starter(tmp_path)
    frame = summary.frame()
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert list(frame["kind"]) == ["task", "task", "checkpoint"] * 3 + ["stage"] * len(summary.stages) + ["total"]
    assert list(frame[frame["kind"] == "stage"]["task"]) == [stage.stage for stage in summary.stages]
    tasks, subtotals = frame[frame["kind"] == "task"], frame[frame["kind"] == "checkpoint"]
    stages, total = frame[frame["kind"] == "stage"], frame[frame["kind"] == "total"].iloc[0]
    for column in ("samples", "max_tokens", "samples_to_do", "max_tokens_to_do"):
        assert subtotals[column].sum() == tasks[column].sum() == total[column]
    assert total["est_seconds"] == pytest.approx(subtotals["est_seconds"].sum() + stages["est_seconds"].sum())
    assert total["est_seconds"] == pytest.approx(summary.total_seconds) and total["rate_source"] == "assumed"
    assert set(subtotals["rate_source"]) == {"assumed"} and set(tasks["parameters"]) == {"7B"}
    assert pd.read_csv(io.StringIO(frame.to_csv(index=False)))["samples"].iloc[-1] == summary.samples
    assert json.loads(frame.to_json(orient="records"))[-1]["max_tokens"] == summary.max_tokens


def test_format_duration() -> None:
    assert format_duration(42) == "42 s"
    assert format_duration(210) == "3.5 min"
    assert format_duration(131.1 * 3600) == "131.1 h"
    assert format_duration(20 * 86400) == "20.0 days"


def test_rates_from_benchmark_result_files(tmp_path: Path) -> None:
    (tmp_path / "vllm.json").write_text(json.dumps({"model": "allenai/Olmo-3-7B-Instruct", "device": "cuda",
                                                    "tokens_per_s": 3100.0, "cpu_tokens_per_s": None}))  # fmt: skip
    (tmp_path / "generate.json").write_text(
        json.dumps({"model": "m-1B", "device": "cpu", "tokens_per_s_divtrace": 9.5})
    )
    (tmp_path / "generate-old.json").write_text(
        json.dumps({"model": "m-2B", "tokens_per_s_divtrace": 5.0})
    )  # no device
    (tmp_path / "generate-bad.json").write_text("{not json")
    table = throughput_table(tmp_path)
    assert len(table) == len(THROUGHPUTS) + 2
    gpu = rate_for("vllm", "gpu", "allenai/Olmo-3-7B-Think", table)  # same size as the measured 7B
    assert gpu.measured and gpu.tokens_per_s == 3100.0 and gpu.source == "measured: benchmarks/results/vllm.json"
    cpu = rate_for("transformers", "cpu", "m-1B", table)
    assert cpu.measured and cpu.source == "measured: benchmarks/results/generate.json"
    assert throughput_table(None) == THROUGHPUTS and throughput_table(tmp_path / "absent") == THROUGHPUTS


def test_the_estimate_covers_the_whole_run_and_says_where_each_figure_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Besides generation: each model's load (its first use de-quantises a packaged GGUF: longer), verification of
    the verifiable tasks, scoring, the analysis and the report; measured on the quickstart, assumed elsewhere."""
    study = load_study("quickstart")
    rows = plan_study(study, RunLayout(tmp_path / "run"), plan_tasks(study))
    monkeypatch.setenv("DIVTRACE_CACHE_DIR", str(tmp_path / "fresh-cache"))
    cold = summarize_plan(study, rows, cuda_available=False, slowdown=1.0)
    assert [stage.stage for stage in cold.stages] == ["model loading", "verify", "score", "analyze and report"]
    assert all(stage.measured and stage.seconds > 0 for stage in cold.stages) and not cold.guess
    assert cold.total_seconds == pytest.approx(cold.seconds + sum(stage.seconds for stage in cold.stages))
    # Three checkpoints of one packaged model: the first load de-quantises it, the two adapter checkpoints load it
    # from the cache.
    first, later = QUICKSTART_LOAD_S["gemma-3-270m"]
    assert cold.stages[0].seconds == pytest.approx(first.value + 2 * later.value)
    assert cold.stages[0].explanation.startswith("3 model(s)") and "de-quantised" in cold.stages[0].explanation
    converted = tmp_path / "fresh-cache" / "models"
    for model in QUICKSTART_MODELS.values():
        (converted / f"{model.gguf_stem}-0123456789abcdef").mkdir(parents=True)
        (converted / f"{model.gguf_stem}-0123456789abcdef" / "config.json").write_text("{}")
    warm = summarize_plan(study, rows, cuda_available=False, slowdown=1.0)
    assert warm.stages[0].seconds == pytest.approx(3 * later.value)
    assert warm.stages[0].seconds < cold.stages[0].seconds

    done = summarize_plan(study, [replace(row, done=True) for row in rows], cuda_available=False, slowdown=1.0)
    assert done.stages == () and done.total_seconds == 0  # nothing left: nothing to load, verify or score

    olmo = load_study("olmo3-7b")
    guessed = summarize_plan(olmo, plan_without_data(olmo), cuda_available=False, slowdown=1.0)
    assert guessed.guess and not guessed.stages[0].measured  # a 7B vLLM engine start is assumed
    assert guessed.total_seconds > guessed.seconds


def test_cpu_work_is_slowed_by_the_machines_load() -> None:
    assert cpu_slowdown(4.0, 2) == 3.0  # 4 CPUs busy elsewhere, 2 wanted: a third of the machine
    assert cpu_slowdown(0.3, 2) == 1.0  # about idle
    study = load_study("quickstart")
    rows = plan_without_data(study)
    idle = summarize_plan(study, rows, cuda_available=False, slowdown=1.0)
    busy = summarize_plan(study, rows, cuda_available=False, slowdown=3.0)
    assert busy.seconds == pytest.approx(3 * idle.seconds)
    assert busy.total_seconds == pytest.approx(3 * idle.total_seconds)
    assert any("3.0x slower" in note for note in busy.notes)
    olmo = load_study("olmo3-7b")  # GPU generation is not slowed by the CPUs' load
    olmo_rows = plan_without_data(olmo)
    gpu = [summarize_plan(olmo, olmo_rows, cuda_available=False, slowdown=s).seconds for s in (1.0, 3.0)]
    assert gpu[0] == gpu[1]


def test_small_transformers_batches_cost_as_much_as_full_ones() -> None:
    """On a CPU a decoding step costs about the same with 6 rows as with 32 (the rates' batch): a shard of a few
    rows counts as a full batch; full batches count exactly their tokens; vLLM's continuous batching is not padded."""
    small = small_quickstart_study(3, 3, 8, shard_size=2)  # shards of 2 and 1 prompts: 6 and 3 rows, 8 tokens
    row = plan_without_data(small)[0]
    spec = small.checkpoints[0]
    assert row.max_tokens == 72 and batched_tokens(row, small.shard_size, spec.options) == 2 * RATE_ROWS * 8
    quickstart = load_study("quickstart")  # 8 prompts x K=8 per shard: two full batches of 32
    full = plan_without_data(quickstart)[0]
    assert batched_tokens(full, quickstart.shard_size, quickstart.checkpoints[0].options) == full.max_tokens
    vllm = CheckpointSpec(name="v", model="m", backend="vllm")
    assert batched_tokens(row, small.shard_size, vllm.options) == row.max_tokens


def test_a_judge_counts_its_calls_in_the_plan(tmp_path: Path) -> None:
    """The starter study (base > sft > dpo; gsm8k and writingprompts) with a judge: writingprompts by Arena-Hard,
    both orders, sft and dpo against base (base not judged); with every output, K times as many."""
    from divtrace.study.spec import JudgeSpec

    path = tmp_path / "study.yaml"
    path.write_text(OLMO_INSTRUCT_STUDY, encoding="utf-8")
    study = load_study(path)
    judged = study.model_copy(update={"judge": JudgeSpec(endpoint="http://127.0.0.1:8000/v1", model="m")})
    rows = plan_without_data(judged)
    prompts = next(row.prompts for row in rows if row.task == "writingprompts")
    stage = next(
        s for s in summarize_plan(judged, rows, cuda_available=False, slowdown=1.0).stages if s.stage == "judge"
    )
    assert stage.explanation.startswith(f"{2 * 2 * prompts:,} judge call(s) to m, 8 at once")
    assert not stage.measured and stage.seconds == pytest.approx(2 * 2 * prompts * 3.0 / 8)
    every = judged.model_copy(update={"judge": judged.judge.model_copy(update={"outputs": "all"})})  # type: ignore[union-attr]
    k = next(row.k for row in rows if row.task == "writingprompts")
    stage = next(
        s for s in summarize_plan(every, rows, cuda_available=False, slowdown=1.0).stages if s.stage == "judge"
    )
    assert stage.explanation.startswith(f"{2 * 2 * prompts * k:,} judge call(s)")
    assert all(s.stage != "judge" for s in summarize_plan(study, rows, cuda_available=False, slowdown=1.0).stages)


def test_an_adapter_checkpoint_is_estimated_as_its_base_model(lora_adapter: Path, tmp_path: Path) -> None:
    """A checkpoint that is ``gemma-3-270m + LoRA adapter`` runs at gemma-3-270m's rate, with its size and its load
    figure (the adapter is merged into the base's weights, so it samples at the base's speed)."""
    study = small_quickstart_study(2, 2, 8)
    base = next(c for c in study.checkpoints if c.model == "quickstart:gemma-3-270m")
    tuned = CheckpointSpec(name="gemma-sft", model=base.model, adapter=str(lora_adapter), stage="sft", parent=base.name)
    study = study.model_copy(update={"checkpoints": [base, tuned]})
    rows = plan_study(study, RunLayout(tmp_path / "run"), plan_tasks(study))  # keyed with the adapter's digest
    summary = summarize_plan(study, rows, cuda_available=False, slowdown=1.0)
    plain, adapted = summary.checkpoints
    assert (adapted.model, adapted.parameters, adapted.rate) == (plain.model, plain.parameters, plain.rate)
    assert adapted.rate.measured and adapted.seconds == pytest.approx(plain.seconds)
    assert_adds_up(summary)
