"""The transformers backend on the packaged quickstart models, offline: real weights, real CLI processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig, MinPLogitsWarper, TemperatureLogitsWarper

from divtrace.generate.backends.options import TransformersOptions
from divtrace.generate.backends.transformers_backend import TransformersGenerator, sampling_warpers
from divtrace.generate.job import GenerationJob
from divtrace.generate.models import resolve_model
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem, read_prompts
from divtrace.generate.protocol import GenerationRequest
from divtrace.generate.runner import RenderOptions, generate_samples
from divtrace.generate.stops import StopPolicy
from divtrace.generate.thinking import ThinkingMode
from divtrace.progress import TOKENS, ProgressEvent
from divtrace.samples import read_samples

INSTRUCT = "quickstart:smollm2-135m-instruct"
BASE = "quickstart:gemma-3-270m"
PROMPTS = [
    "Name a fruit.",
    "Write one line about the sea.",
    "Give a tip for sleeping well.",
    "Invent a name for a cat.",
    "Describe a cloud.",
    "Say something kind.",
]


@pytest.fixture(scope="module")
def instruct() -> TransformersGenerator:
    return TransformersGenerator(INSTRUCT, TransformersOptions(threads=2))


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt_id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    return path


def divtrace_cli(*args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "divtrace.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    process = divtrace_cli(*args)
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_k_distinct_samples_and_full_records(instruct: TransformersGenerator, tmp_path: Path) -> None:
    params = SamplingParams(k=4, temperature=0.9, max_new_tokens=12, seed=3)
    items = [PromptItem(f"q{i}", p) for i, p in enumerate(PROMPTS[:2])]
    summary = generate_samples(
        instruct, GenerationJob.of(items, params, out_dir=tmp_path, checkpoint="smol", task="demo")
    )
    assert (summary.shards, summary.written_shards, summary.samples_written) == (1, 1, 8)
    records = read_samples(tmp_path / "samples").records
    assert [r.prompt_id for r in records] == ["q0", "q1"]
    for record in records:
        assert len(record.outputs) == 4 and len(set(record.outputs)) == 4
        assert record.responses == [output.strip() for output in record.outputs] and record.reasoning == [None] * 4
        assert record.thinking_unclosed == [False] * 4
        assert len(set(record.sample_seeds or [])) == 4
        assert all(0 < n <= 12 for n in record.output_tokens or [])
        assert set(record.finish_reasons or []) <= {"stop", "length"}
        sampling = record.sampling or {}
        assert sampling["temperature"] == 0.9 and sampling["top_p"] == 0.95 and sampling["top_k"] is None
        assert sampling["max_new_tokens"] == 12 and sampling["seed"] == 3 and sampling["chat_template"] is True
        assert sampling["backend"] == "transformers" and sampling["thinking"] == "native"
        assert record.model_ref and len(record.model_ref["file_sha256"]) == 64
        assert record.rendered_prompt.startswith("<|im_start|>")
        assert len(set(record.sample_keys)) == 4


def test_progress_moves_within_one_shard_in_tokens_of_the_budget(
    instruct: TransformersGenerator, tmp_path: Path
) -> None:
    """One shard of 2 prompts x K=4 (8 samples, one batch): progress arrives per decoding step, not only when the
    shard is written; tokens of the budget (8 x 6), monotone, ending at the total, for the unit checkpoint/task."""
    params = SamplingParams(k=4, temperature=0.9, max_new_tokens=6, seed=3)
    items = [PromptItem(f"q{i}", p) for i, p in enumerate(PROMPTS[:2])]
    events: list[ProgressEvent] = []
    job = GenerationJob.of(items, params, out_dir=tmp_path, checkpoint="smol", task="demo", shard_size=8)
    generate_samples(instruct, job, events.append)
    assert len(job.shard_ranges()) == 1
    assert {(e.stage, e.unit, e.count, e.total) for e in events} == {("", "smol/demo", TOKENS, 48)}
    done = [e.done for e in events]
    assert done[0] == 0 and done[-1] == 48 and done == sorted(done)
    within = [d for d in done if 0 < d < 48]
    assert within and all(d % 8 == 0 for d in within)  # a step of the batch: 8 rows, one token each


def test_same_seed_same_samples_other_seed_other_samples(instruct: TransformersGenerator, tmp_path: Path) -> None:
    items = [PromptItem("q0", PROMPTS[0]), PromptItem("q1", PROMPTS[1])]

    def draw(seed: int, out: str, shard_size: int) -> list[list[str]]:
        params = SamplingParams(k=3, max_new_tokens=10, seed=seed)
        job = GenerationJob.of(items, params, out_dir=tmp_path / out, checkpoint="c", task="t", shard_size=shard_size)
        generate_samples(instruct, job)
        return [r.outputs for r in read_samples(tmp_path / out / "samples").records]

    first = draw(11, "a", shard_size=2)
    assert draw(11, "b", shard_size=1) == first  # other shards and batches: the same samples
    assert draw(12, "c", shard_size=2) != first


def test_stop_strings_and_suppressed_thinking(instruct: TransformersGenerator, tmp_path: Path) -> None:
    params = SamplingParams(k=3, max_new_tokens=24, stop=(" ", "\n"), seed=5)
    render = RenderOptions(system_prompt="Answer briefly.", thinking=ThinkingMode.suppressed, stops=StopPolicy.always)
    job = GenerationJob.of(
        [PromptItem("q0", PROMPTS[2])], params, out_dir=tmp_path, checkpoint="c", task="t", render=render
    )
    generate_samples(instruct, job)
    [record] = read_samples(tmp_path / "samples").records
    assert all(" " not in o and "\n" not in o for o in record.outputs)
    assert "stop" in (record.finish_reasons or [])
    assert record.rendered_prompt.endswith("<think>\n</think>\n")
    assert "Answer briefly." in record.rendered_prompt
    assert record.sampling and record.sampling["stop"] == [" ", "\n"] and record.sampling["thinking"] == "suppressed"


def test_rows_that_end_leave_the_batch(instruct: TransformersGenerator) -> None:
    """A batch of 8 rows where some end early (end of sequence, or the stop string at the end of their output): the
    model's forward pass sees a shrinking batch, and computes each row exactly once per token the row draws (the
    rows of all steps add up to the tokens drawn). The same call draws the same completions again."""
    params = SamplingParams(k=8, temperature=1.0, max_new_tokens=16, stop=(".",), seed=2)
    item = GenerationRequest("q0", PROMPTS[0], instruct.render(PROMPTS[0])[0], tuple(range(100, 108)))
    batch_rows: list[int] = []
    hook = instruct.model.register_forward_pre_hook(
        lambda module, args, kwargs: batch_rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        [together] = instruct.generate([item], params)
    finally:
        hook.remove()
    ended_early = [c for c in together if c.output_tokens < params.max_new_tokens]
    assert ended_early and len(ended_early) < 8
    assert any(c.finish_reason == "stop" and c.text.endswith(".") is False for c in ended_early)  # cut at the stop
    assert batch_rows[0] == 8 and batch_rows == sorted(batch_rows, reverse=True) and batch_rows[-1] < 8
    assert sum(batch_rows) == sum(c.output_tokens for c in together)
    assert instruct.generate([item], params) == [together]


def test_stop_policy_auto_applies_stops_to_completion_prompts_only(
    instruct: TransformersGenerator, tmp_path: Path
) -> None:
    params = SamplingParams(k=3, max_new_tokens=16, stop=(" ",), seed=5)
    item = [PromptItem("q0", PROMPTS[1])]
    records = {}
    for label, render in {
        "chat-auto": RenderOptions(),
        "chat-always": RenderOptions(stops=StopPolicy.always),
        "plain-auto": RenderOptions(chat_template=False),
        "plain-never": RenderOptions(chat_template=False, stops=StopPolicy.never),
    }.items():
        generate_samples(
            instruct, GenerationJob.of(item, params, out_dir=tmp_path, checkpoint=label, task="t", render=render)
        )
        [records[label]] = read_samples(tmp_path / "samples" / label).records
    used = {label: (r.sampling or {}).get("stop") for label, r in records.items()}
    assert used == {"chat-auto": [], "chat-always": [" "], "plain-auto": [" "], "plain-never": []}
    assert all((r.sampling or {}).get("stop_policy") for r in records.values())
    # the stops in effect change the samples and their keys: where they apply no output holds a space
    assert any(" " in output for output in records["chat-auto"].outputs)
    assert not any(" " in output for output in records["chat-always"].outputs)
    assert not any(" " in output for output in records["plain-auto"].outputs)
    keys = {label: tuple(r.sample_keys) for label, r in records.items()}
    assert keys["chat-auto"] != keys["chat-always"] and keys["plain-auto"] != keys["plain-never"]


def test_min_p_near_greedy_narrows_the_samples_and_is_recorded(instruct: TransformersGenerator, tmp_path: Path) -> None:
    """At a high temperature, min_p=0.9 keeps only the tokens nearly as likely as the top one: fewer distinct
    samples than without min_p at the same seeds. min_p is recorded (and keyed) when set, absent when not."""
    items = [PromptItem(f"q{i}", p) for i, p in enumerate(PROMPTS[:2])]
    drawn = {}
    for label, min_p in (("off", None), ("near-greedy", 0.9)):
        params = SamplingParams(k=6, temperature=1.5, min_p=min_p, max_new_tokens=12, seed=3)
        generate_samples(instruct, GenerationJob.of(items, params, out_dir=tmp_path, checkpoint=label, task="t"))
        drawn[label] = read_samples(tmp_path / "samples" / label).records
    for off, narrowed in zip(drawn["off"], drawn["near-greedy"], strict=True):
        assert off.sample_seeds == narrowed.sample_seeds
        assert len(set(off.outputs)) == 6  # temperature 1.5 alone: every sample its own
        assert len(set(narrowed.outputs)) < len(set(off.outputs))
        assert "min_p" not in (off.sampling or {}) and (narrowed.sampling or {})["min_p"] == 0.9
        assert not set(off.sample_keys) & set(narrowed.sample_keys)


def test_warpers_are_transformers_own_in_its_order_with_its_min_p_rule(instruct: TransformersGenerator) -> None:
    """On constructed logits, the warpers divtrace samples after give what transformers' own sampling processors
    give (built by the installed transformers' ``_get_logits_processor``: its choice and order), and min-p keeps
    exactly the tokens whose probability is at least min_p times the top token's."""
    scores = torch.randn(4, 2000, generator=torch.Generator().manual_seed(0)) * 3
    ids = torch.zeros(4, 1, dtype=torch.long)
    # each filter removes tokens the ones before it kept, in some row
    params = SamplingParams(temperature=2.0, top_k=40, top_p=0.9, min_p=0.1)
    config = GenerationConfig(do_sample=True, temperature=2.0, top_k=40, top_p=0.9, min_p=0.1)
    theirs = instruct.model._get_logits_processor(generation_config=config, device="cpu")
    ours = sampling_warpers(params)
    assert [type(w).__name__ for w in theirs] == [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
    ]  # fmt: skip
    assert [type(w).__name__ for w in ours] == [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "NucleusFilter", "MinPLogitsWarper",
    ]  # fmt: skip
    warped = ours(ids, scores.clone())
    assert torch.equal(warped, theirs(ids, scores.clone()))
    without_min_p = sampling_warpers(params.model_copy(update={"min_p": None}))(ids, scores.clone())
    assert torch.isfinite(warped).sum() < torch.isfinite(without_min_p).sum()  # min-p removed some

    for min_p in (0.05, 0.5, 0.9, 1.0):
        only = SamplingParams(temperature=1.5, top_p=1.0, min_p=min_p)
        warped = sampling_warpers(only)(ids, scores.clone())
        reference = MinPLogitsWarper(min_p)(ids, TemperatureLogitsWarper(1.5)(ids, scores.clone()))
        assert torch.equal(warped, reference)
        probs = torch.softmax(scores / 1.5, dim=-1)
        kept = probs >= min_p * probs.max(dim=-1, keepdim=True).values
        assert torch.equal(torch.isfinite(warped), kept)
        assert kept.sum(dim=-1).min() >= 1
    # min_p unset: the warpers divtrace sampled after before it knew min_p
    assert [type(w).__name__ for w in sampling_warpers(SamplingParams())] == [
        "TemperatureLogitsWarper",
        "NucleusFilter",
    ]


def test_a_cached_quickstart_model_loads_without_reading_the_gguf() -> None:
    """Once converted, a packaged model loads from divtrace's safetensors cache: a process in which the ``gguf``
    library cannot be imported (what a GGUF load needs) loads it and samples."""
    resolved = resolve_model(INSTRUCT)  # converts once (cached afterwards)
    assert resolved.is_local and not resolved.load_path.endswith(".gguf")  # a directory: the converted copy
    code = (
        "import sys; sys.modules['gguf'] = None\n"  # import gguf now fails
        "from divtrace.generate.backends.transformers_backend import TransformersGenerator\n"
        "from divtrace.generate.params import SamplingParams\n"
        "from divtrace.generate.protocol import GenerationRequest\n"
        f"g = TransformersGenerator({INSTRUCT!r})\n"
        "[[c]] = g.generate([GenerationRequest('q', 'p', 'Hello', (1,))], SamplingParams(k=1, max_new_tokens=3))\n"
        "print(g.resolved.load_path, c.output_tokens)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path, tokens = done.stdout.split()
    assert path == str(resolved.load_path) and 0 < int(tokens) <= 3


def test_cli_resumes_after_sigkill_without_duplicates(prompts_file: Path, tmp_path: Path) -> None:
    args = ["generate", "--model", INSTRUCT, "--prompts", str(prompts_file), "-k", "2", "--max-new-tokens", "16"]
    args += ["--shard-size", "1", "--seed", "9"]
    complete = run_cli(*args, "--out", str(tmp_path / "complete"))
    assert complete.returncode == 0, complete.stderr

    out = tmp_path / "killed"
    shards = out / "samples" / "smollm2-135m-instruct" / "prompts"
    process = divtrace_cli(*args, "--out", str(out), start_new_session=True)
    deadline = time.monotonic() + 300
    while not (shards / "shard-00001.parquet").exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # mid-run: shard 2 (or later) is being generated or written
    process.wait()
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.parquet")}
    assert 2 <= len(before) < len(PROMPTS)

    resumed = run_cli(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} of {len(PROMPTS)} shard(s) were already done" in resumed.stderr
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.parquet")}
    assert {name: after[name] for name in before} == before  # finished shards were not regenerated
    assert not list(shards.glob(".*"))  # no temporary file left behind

    records = read_samples(out / "samples").records
    assert sorted(r.prompt_id for r in records) == [f"q{i}" for i in range(len(PROMPTS))]
    assert all(len(r.outputs) == 2 for r in records)
    reference = {r.prompt_id: r.outputs for r in read_samples(tmp_path / "complete" / "samples").records}
    assert {r.prompt_id: r.outputs for r in records} == reference  # same samples as the uninterrupted run

    again = run_cli(*args, "--out", str(out))
    assert again.returncode == 0 and "shard(s) already done" in again.stderr
    assert "the model was not loaded" in again.stderr and "loading" not in again.stderr  # a rerun loads nothing
    changed = run_cli(*args[:-1], "10", "--out", str(out))  # another seed into the same directory
    assert changed.returncode == 2 and "was generated with seed=9, now 10" in " ".join(changed.stderr.split())


@pytest.mark.slow
def test_base_quickstart_model_without_chat_template(tmp_path: Path) -> None:
    prompts = tmp_path / "base.txt"
    prompts.write_text("The capital of France is\nOnce upon a time\n")
    result = run_cli(
        "generate", "--model", BASE, "--prompts", str(prompts), "-k", "3", "--max-new-tokens", "8",
        "--out", str(tmp_path / "out"), "--threads", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read_samples(tmp_path / "out" / "samples").records
    assert len(records) == 2
    for record in records:
        assert len(set(record.outputs)) == 3
        assert record.sampling and record.sampling["chat_template"] is False
        assert record.rendered_prompt == record.prompt
        assert record.model_ref and record.model_ref["id"] == BASE
    assert [i.prompt for i in read_prompts(prompts)] == [r.prompt for r in records]
