"""The cost model on a study whose tokens and GPU-hours are computed by hand."""

from __future__ import annotations

import pytest

from divtrace.plan.cost import cost_rows, estimate_cost
from divtrace.study import CheckpointSpec, ExecutorSpec, SamplingSpec, Study, TaskSpec, load_study


def study(**executor: float) -> Study:
    return Study(
        name="cost",
        checkpoints=[
            CheckpointSpec(name="base", model="m", backend="vllm", options={"tensor_parallel_size": 2}),
            CheckpointSpec(name="served", model="m", backend="openai", parent="base"),
        ],
        tasks=[TaskSpec(name="gsm8k", n=10), TaskSpec(name="humaneval")],
        sampling=SamplingSpec(k=4, max_new_tokens=100),
        executor=ExecutorSpec(**executor),
    )


def test_tokens_and_gpu_hours_by_hand() -> None:
    rows = {(r.checkpoint, r.task): r for r in cost_rows(study())}
    assert rows[("base", "gsm8k")].prompts == 10 and rows[("base", "humaneval")].prompts == 164  # task default N
    assert rows[("base", "gsm8k")].gpus == 2.0 and rows[("served", "gsm8k")].gpus == 0.0
    cost = estimate_cost(study(), tokens_per_s=100.0)
    per_checkpoint = (10 + 164) * 4 * 100  # prompts x K x max_new_tokens
    assert cost.samples == 2 * (10 + 164) * 4
    assert cost.tokens == 2 * per_checkpoint
    assert cost.gpu_hours == pytest.approx(per_checkpoint / 100.0 * 2 / 3600)  # only base holds GPUs (2 each)
    half = estimate_cost(study(gpus_per_model=1.0), tokens_per_s=100.0, length_fraction=0.5)
    assert half.gpu_hours == pytest.approx(2 * per_checkpoint * 0.5 / 100.0 / 3600)  # both, 1 GPU each
    with pytest.raises(ValueError, match="tokens_per_s"):
        estimate_cost(study(), tokens_per_s=0)


def test_olmo3_preset_cost() -> None:
    olmo = load_study("olmo3-7b")
    cost = estimate_cost(olmo, tokens_per_s=2500.0)
    assert len(cost_rows(olmo)) == len(olmo.checkpoints) * 15
    assert cost.samples == len(olmo.checkpoints) * 16 * sum(
        r.prompts for r in cost_rows(olmo)[:: len(olmo.checkpoints)]
    )
