"""Resuming a generation: a finished one is recognised without loading the model, and a refused resume names the
setting that differs. Real shards from the packaged SmolLM2 model, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divtrace.generate.backends.options import TransformersOptions, VLLMOptions
from divtrace.generate.backends.transformers_backend import TransformersGenerator
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.protocol import Generator
from divtrace.generate.resume import ModelSource, ResumeMismatchError, generation_status
from divtrace.generate.runner import RenderOptions, generate_if_needed, generate_samples
from divtrace.generate.store import shard_path
from divtrace.generate.thinking import ThinkingMode
from divtrace.progress import TOKENS, ProgressEvent

INSTRUCT = "quickstart:smollm2-135m-instruct"
ITEMS = [PromptItem(f"q{i}", text) for i, text in enumerate(["Name a fruit.", "Describe a cloud.", "Say hi."])]
PARAMS = SamplingParams(k=2, temperature=0.8, max_new_tokens=6, seed=4)
SOURCE = ModelSource("transformers", INSTRUCT)
CPU = TransformersOptions(threads=2, device="cpu")


@pytest.fixture(scope="module")
def instruct() -> TransformersGenerator:
    return TransformersGenerator(INSTRUCT, CPU)


@pytest.fixture(scope="module")
def finished(instruct: TransformersGenerator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    generate_samples(instruct, job(ITEMS, PARAMS, out))
    return out


def job(
    items: list[PromptItem], params: SamplingParams, out: Path, render: RenderOptions | None = None
) -> GenerationJob:
    """The generation of ``items`` as (smol, t) in shards of 2 prompts under ``out``."""
    return GenerationJob.of(items, params, out_dir=out, checkpoint="smol", task="t", render=render, shard_size=2)


def no_model() -> Generator:
    raise AssertionError("the model was loaded although every shard is done")


def status(out: Path, params: SamplingParams = PARAMS, source: ModelSource = SOURCE, **render: object):
    return generation_status(job(ITEMS, params, out, RenderOptions(**render)), source)  # type: ignore[arg-type]


def test_finished_generation_is_done_without_a_generator(finished: Path) -> None:
    done = status(finished)
    assert done.done and done.finished == (0, 1) and done.describe() == "all 2 shard(s) are already done"
    assert status(
        finished, source=ModelSource("transformers", INSTRUCT, options=TransformersOptions(device="cpu"))
    ).done
    # only the options given are requested settings: the model's defaults (device None) leave it to the machine
    assert status(finished, source=ModelSource("transformers", INSTRUCT, options=TransformersOptions())).done
    assert status(finished, chat_template=True).done  # what the model's template gave


def test_a_source_takes_the_options_of_its_backend() -> None:
    assert ModelSource("vllm", INSTRUCT, options=VLLMOptions(enforce_eager=True)).options == VLLMOptions(
        enforce_eager=True
    )
    with pytest.raises(ValueError, match="VLLMOptions are not options of the transformers backend"):
        ModelSource("transformers", INSTRUCT, options=VLLMOptions())


def test_rerun_of_a_finished_generation_never_calls_the_factory(finished: Path) -> None:
    events: list[ProgressEvent] = []
    summary = generate_if_needed(no_model, job(ITEMS, PARAMS, finished), SOURCE, progress=events.append)
    assert not summary.model_loaded and (summary.shards, summary.skipped_shards, summary.written_shards) == (2, 2, 0)
    tokens = 6 * PARAMS.max_new_tokens  # 6 samples, all done: the whole budget at once
    assert [(e.done, e.total, e.count) for e in events] == [(tokens, tokens, TOKENS)]


def test_missing_shard_loads_the_model_and_finishes(instruct: TransformersGenerator, tmp_path: Path) -> None:
    generate_samples(instruct, job(ITEMS[:2], PARAMS, tmp_path))
    partial = status(tmp_path)
    assert not partial.done and partial.finished == (0,) and partial.missing == (1,)
    loaded: list[bool] = []

    def factory() -> Generator:
        loaded.append(True)
        return TransformersGenerator(INSTRUCT, CPU)

    summary = generate_if_needed(factory, job(ITEMS, PARAMS, tmp_path), SOURCE)
    assert loaded == [True] and summary.model_loaded and (summary.skipped_shards, summary.written_shards) == (1, 1)
    assert status(tmp_path).done


def test_other_temperature_is_refused_naming_it_before_and_after_loading(
    instruct: TransformersGenerator, finished: Path
) -> None:
    hotter = PARAMS.model_copy(update={"temperature": 0.6})
    with pytest.raises(ResumeMismatchError, match=r"shard-00000 .* was generated with temperature=0.8, now 0.6; "
                       r"use a new --out or the same settings"):  # fmt: skip
        generate_if_needed(no_model, job(ITEMS, hotter, finished), SOURCE)
    # the loaded model's check names it too
    with pytest.raises(ResumeMismatchError, match=re.escape("temperature=0.8, now 0.6")):
        generate_samples(instruct, job(ITEMS, hotter, finished))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"params": PARAMS.model_copy(update={"seed": 5})}, "seed=4, now 5"),
        ({"params": PARAMS.model_copy(update={"k": 3})}, "k=2, now 3"),
        ({"params": PARAMS.model_copy(update={"min_p": 0.5})}, "min_p=(not set), now 0.5"),
        ({"thinking": ThinkingMode.suppressed}, "thinking='native', now 'suppressed'"),
        ({"system_prompt": "Be brief."}, "system_prompt=None, now 'Be brief.'"),
        ({"chat_template": False}, "chat_template=True, now False"),
        (
            {"source": ModelSource("transformers", INSTRUCT, options=TransformersOptions(dtype="bfloat16"))},
            "dtype='float32', now",
        ),
        ({"source": ModelSource("transformers", "quickstart:gemma-3-270m")}, "model_ref.id="),
        ({"source": ModelSource("vllm", INSTRUCT)}, "backend='transformers', now 'vllm'"),
    ],
)
def test_each_requested_setting_is_named(finished: Path, change: dict[str, object], named: str) -> None:
    params = change.pop("params", PARAMS)
    source = change.pop("source", SOURCE)
    with pytest.raises(ResumeMismatchError, match=r"shard-00000 .* was generated with " + re.escape(named)):
        status(finished, params, source, **change)  # type: ignore[arg-type]


def test_min_p_stored_but_now_off_is_named_before_loading(finished: Path, tmp_path: Path) -> None:
    copy = _copy_shards(finished, tmp_path, sampling={"min_p": 0.5})  # as if drawn with min_p=0.5
    with pytest.raises(ResumeMismatchError, match=re.escape("was generated with min_p=0.5, now (not set)")):
        generate_if_needed(no_model, job(ITEMS, PARAMS, copy), SOURCE)


def test_other_prompts_are_named(finished: Path) -> None:
    edited = [ITEMS[0], PromptItem("q1", "Describe a storm."), ITEMS[2]]
    with pytest.raises(ResumeMismatchError, match=re.escape("the text of prompt 'q1'='Describe a cloud.', now")):
        generation_status(job(edited, PARAMS, finished), SOURCE)


def test_what_cannot_be_confirmed_unloaded_is_never_called_done(finished: Path, tmp_path: Path) -> None:
    # Another backend: its engine settings are only known once loaded (a vLLM shard here would be refused anyway).
    nothing = GenerationJob.of([], PARAMS, out_dir=finished, checkpoint="x", task="t")
    assert generation_status(nothing, ModelSource("vllm", INSTRUCT)).done  # nothing to generate is done
    # A hub model on a branch: its commit is only known once loaded.
    hub = ModelSource("transformers", "HuggingFaceTB/SmolLM2-135M-Instruct", revision="main")
    copy = _copy_shards(finished, tmp_path, model_ref={"id": hub.model, "revision": "main", "commit": "a" * 40})
    pending = status(copy, source=hub)
    assert not pending.done and "only known once it is loaded" in pending.unconfirmed[0]
    pinned = ModelSource("transformers", hub.model, revision="a" * 40)
    copy = _copy_shards(finished, tmp_path / "pinned", model_ref={"id": hub.model, "revision": "a" * 40,
                                                                  "commit": "a" * 40})  # fmt: skip
    assert not status(copy, source=pinned).done  # the keys were made for the other model_ref: not consistent
    # A default setting of this machine that differs (a stored device) is left to the loaded model, not refused.
    copy = _copy_shards(finished, tmp_path / "gpu", sampling={"device": "cuda:0"})
    elsewhere = status(copy)
    assert not elsewhere.done and "device='cuda:0', here 'cpu'" in elsewhere.unconfirmed[0]


def _copy_shards(source: Path, target: Path, **replace: dict[str, object]) -> Path:
    """The finished shards with some ``sampling`` / ``model_ref`` values replaced (keys left as they were)."""
    for index in (0, 1):
        table = pq.read_table(shard_path(source, "smol", "t", index))
        for column, values in replace.items():
            cells = [json.dumps({**json.loads(cell), **values}) if column == "sampling" else json.dumps(values)
                     for cell in table.column(column).to_pylist()]  # fmt: skip
            table = table.set_column(table.schema.get_field_index(column), column, pa.array(cells, pa.string()))
        path = shard_path(target, "smol", "t", index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    return target
