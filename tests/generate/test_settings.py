"""Typed generation settings: per-backend option models validated where a study is loaded, the same models built
from ``divtrace generate``'s flags, the study's sampling as the one source of a backend's SamplingParams, and the
stop-string cut shared by the backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from divtrace.errors import DivtraceError
from divtrace.generate.backends import backend_options, create_generator, validate_options
from divtrace.generate.backends.options import (
    OPTIONS_MODELS,
    OpenAIOptions,
    TransformersOptions,
    VLLMOptions,
    tensor_parallel_size,
)
from divtrace.generate.params import MIN_STUDY_K, SamplingParams, SamplingSpec, sample_seed
from divtrace.generate.resume import UNKEYED_SAMPLING
from divtrace.generate.stops import cut_at_stop
from divtrace.generate.store import sample_key
from divtrace.study import CheckpointSpec, load_study, parse_study


def _study(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "s",
        "checkpoints": [
            {"name": "a", "model": "quickstart:smollm2-135m-instruct", "backend": backend, "options": options}
        ],
        "tasks": [{"name": "arithmetic", "n": 2}],
    }


def _load(tmp_path: Path, backend: str, options: dict[str, Any]) -> Any:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study(backend, options), sort_keys=False))
    return load_study(path)


@pytest.mark.parametrize(
    ("backend", "options", "key", "message"),
    [
        ("transformers", {"batchsize": 8}, "checkpoints.0.options.batchsize", "Extra inputs are not permitted"),
        ("transformers", {"batch_size": 0}, "checkpoints.0.options.batch_size", "greater than or equal to 1"),
        ("vllm", {"tensor_parallel_size": 0}, "checkpoints.0.options.tensor_parallel_size", "greater than or equal"),
        ("vllm", {"device": "tpu"}, "checkpoints.0.options.device", "'auto', 'cpu' or 'cuda'"),
        ("vllm", {"base_url": "http://h"}, "checkpoints.0.options.base_url", "Extra inputs are not permitted"),
        ("openai", {"endpoint": "responses"}, "checkpoints.0.options.endpoint", "'completions' or 'chat'"),
        ("openai", {"max_retries": -1}, "checkpoints.0.options.max_retries", "greater than or equal to 0"),
        ("openai", {"batch_size": 4}, "checkpoints.0.options.batch_size", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_option_is_an_error_naming_its_key_when_the_study_loads(
    tmp_path: Path, backend: str, options: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(DivtraceError) as caught:
        _load(tmp_path, backend, options)
    text = str(caught.value)
    assert str(tmp_path / "study.yaml") in text
    assert f"key '{key}'" in text
    assert message in text


def test_options_load_as_their_backends_model(tmp_path: Path) -> None:
    study = _load(tmp_path, "vllm", {"tensor_parallel_size": 2, "kv_cache_gib": 2})
    options = study.checkpoints[0].options
    assert isinstance(options, VLLMOptions)
    assert (options.tensor_parallel_size, options.kv_cache_gib, options.device) == (2, 2.0, "auto")
    assert tensor_parallel_size(options) == 2
    assert isinstance(CheckpointSpec(name="a", model="m").options, TransformersOptions)
    served = CheckpointSpec(name="a", model="m", backend="openai", options={"tokenizer": "t"})
    assert isinstance(served.options, OpenAIOptions) and served.options.tokenizer == "t"
    assert tensor_parallel_size(served.options) == 1


def test_options_dump_as_given_so_study_yaml_and_keys_do_not_change(tmp_path: Path) -> None:
    given = {"max_model_len": 4096, "kv_cache_gib": 2, "dtype": "bfloat16"}  # not the model's field order
    study = _load(tmp_path, "vllm", given)
    dumped = yaml.safe_load(study.to_yaml())["checkpoints"][0]["options"]
    assert list(dumped.items()) == list(given.items())  # order and values (2, not 2.0), no defaults
    assert isinstance(dumped["kv_cache_gib"], int)
    assert "options: {}" in parse_study(_study("transformers", {})).to_yaml()
    assert parse_study(yaml.safe_load(study.to_yaml())).to_yaml() == study.to_yaml()  # round trip


def test_options_of_another_backend_or_a_backend_key_are_refused() -> None:
    with pytest.raises(ValueError, match="VLLMOptions are not options of the transformers backend"):
        CheckpointSpec(name="a", model="m", options=VLLMOptions(tensor_parallel_size=2))
    with pytest.raises(DivtraceError, match="'backend' is a key of the checkpoint"):
        parse_study(_study("vllm", {"backend": "vllm"}))
    made = CheckpointSpec(name="a", model="m", backend="vllm", options=VLLMOptions(tensor_parallel_size=2))
    assert made.options.model_dump() == {"tensor_parallel_size": 2}


def test_cli_flags_build_the_same_model_as_a_study() -> None:
    flags = {  # what divtrace generate passes: every flag, None when not given
        "model": "m", "revision": None, "device": "cpu", "dtype": None, "batch_size": 8, "threads": None,
        "tensor_parallel_size": 2, "gpu_memory_utilization": None, "kv_cache_gib": 1.5, "enforce_eager": True,
        "max_model_len": None, "base_url": "http://127.0.0.1:9/v1", "endpoint": "chat", "max_concurrency": 4,
        "max_retries": 1, "n_mode": "auto", "tokenizer": None, "extra_sampling_params": False,
    }  # fmt: skip
    studies = {
        "transformers": {"device": "cpu", "batch_size": 8},
        "vllm": {"device": "cpu", "tensor_parallel_size": 2, "kv_cache_gib": 1.5, "enforce_eager": True},
        "openai": {
            "base_url": "http://127.0.0.1:9/v1", "endpoint": "chat", "max_concurrency": 4, "max_retries": 1,
            "n_mode": "auto", "extra_sampling_params": False,
        },
    }  # fmt: skip
    for backend, options in studies.items():
        from_flags = backend_options(backend, flags)
        from_study = parse_study(_study(backend, options)).checkpoints[0].options
        assert type(from_flags) is type(from_study)
        assert dict(from_flags) == dict(from_study)
        assert from_flags.model_dump() == from_study.model_dump()


def test_cli_flags_not_given_leave_every_default_to_the_model() -> None:
    not_given = {name: None for model in OPTIONS_MODELS.values() for name in model.model_fields}
    for backend, model in OPTIONS_MODELS.items():
        given = {"base_url": "http://127.0.0.1:9/v1"} if backend == "openai" else {}  # openai needs its server
        options = backend_options(backend, {**not_given, **given})
        assert options.model_dump() == given
        assert dict(options) == dict(model.model_validate(given))


def test_cli_flag_errors_name_the_option() -> None:
    with pytest.raises(DivtraceError, match="vllm backend options: kv_cache_gib: Input should be greater than 0"):
        backend_options("vllm", {"kv_cache_gib": -1.0})
    with pytest.raises(DivtraceError, match="needs --base-url"):
        backend_options("openai", {"base_url": None})
    with pytest.raises(DivtraceError, match="unknown generation backend"):
        backend_options("llamacpp", {})


def test_given_options_and_defaults_filled_in() -> None:
    options = TransformersOptions.model_validate({"batch_size": 4})
    assert options.model_dump() == {"batch_size": 4} and options.model_fields_set == {"batch_size"}
    assert (options.threads, options.ignore_eos) == (None, False)  # the model's defaults apply to the rest
    threaded = options.with_defaults(threads=2, revision=None)
    assert threaded.model_dump() == {"batch_size": 4, "threads": 2} and threaded.threads == 2
    assert TransformersOptions(threads=1).with_defaults(threads=2).threads == 1  # a given option wins
    local = CheckpointSpec(name="a", model="m", revision="main", options={"batch_size": 4})
    assert local.backend_options().model_dump() == {"batch_size": 4, "revision": "main"}
    served = CheckpointSpec(name="a", model="m", revision="main", backend="openai")
    assert served.backend_options().model_dump() == {}


def test_openai_options_hold_the_constraints_the_constructor_had() -> None:
    bare = OpenAIOptions(base_url="http://127.0.0.1:9/")
    assert bare.base_url == "http://127.0.0.1:9/v1"  # normalized for use...
    assert bare.model_dump() == {"base_url": "http://127.0.0.1:9/"}  # ...dumped as given
    with pytest.raises(DivtraceError, match=r"openai backend options: base_url: .*'nope' is not an http"):
        backend_options("openai", {"base_url": "nope"})
    with pytest.raises(DivtraceError, match=r"openai backend options: .*chat endpoint renders prompts on the server"):
        backend_options("openai", {"base_url": "http://h:1", "endpoint": "chat", "tokenizer": "t"})
    with pytest.raises(DivtraceError, match="openai backend options: n_mode: Input should be 'auto', 'native'"):
        validate_options("openai", {"n_mode": "sometimes"})


def test_create_generator_validates_a_mapping_before_importing_the_backend() -> None:
    with pytest.raises(DivtraceError, match="transformers backend options: batchsize: Extra inputs are not permitted"):
        create_generator("transformers", "m", {"batchsize": 8})
    with pytest.raises(DivtraceError, match="vllm backend options must be a mapping or VLLMOptions, not OpenAIOpt"):
        create_generator("vllm", "m", OpenAIOptions())
    assert validate_options("vllm", {"enforce_eager": True}) == VLLMOptions(enforce_eager=True)
    given = TransformersOptions(batch_size=2)
    assert validate_options("transformers", given) is given


def test_sampling_params_are_made_from_the_study_sampling() -> None:
    spec = SamplingSpec(k=4, temperature=0.7, top_k=5, seed=9)
    params = spec.params(stop=("\n",), task_max_new_tokens=64)
    assert params == SamplingParams(k=4, temperature=0.7, top_p=0.95, top_k=5, max_new_tokens=64, stop=("\n",), seed=9)
    assert params.as_record() == {
        "temperature": 0.7, "top_p": 0.95, "top_k": 5, "max_new_tokens": 64, "stop": ["\n"], "seed": 9, "k": 4,
    }  # fmt: skip
    assert spec.params(stop=(), task_max_new_tokens=64, max_new_tokens=10).max_new_tokens == 10  # the task's own
    capped = SamplingSpec(max_new_tokens=32)
    assert capped.params(stop=(), task_max_new_tokens=64).max_new_tokens == 32  # the study's cap
    assert capped.params(stop=(), task_max_new_tokens=64, max_new_tokens=8).max_new_tokens == 8
    assert MIN_STUDY_K == 2
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        SamplingSpec(k=1)
    with pytest.raises(ValueError, match="greater than 0"):
        SamplingSpec(temperature=0)
    assert SamplingParams(k=1).k == 1  # a backend may be asked for a single sample


def test_min_p_is_a_study_setting_left_out_of_records_when_unset() -> None:
    # the record as it was before min_p existed: no min_p key
    assert SamplingParams().as_record() == {
        "temperature": 0.6, "top_p": 0.95, "top_k": None, "max_new_tokens": 512, "stop": [], "seed": 1234, "k": 16,
    }  # fmt: skip
    spec = SamplingSpec(k=4, temperature=1.2, min_p=0.05)
    params = spec.params(stop=(), task_max_new_tokens=64)
    assert params.min_p == 0.05
    assert list(params.as_record().items()) == [
        ("temperature", 1.2), ("top_p", 0.95), ("top_k", None), ("min_p", 0.05), ("max_new_tokens", 64),
        ("stop", []), ("seed", 1234), ("k", 4),
    ]  # fmt: skip
    assert SamplingSpec(min_p=1.0).min_p == 1.0  # 1: only the top token(s)
    for bad, message in ((0.0, "greater than 0"), (1.5, "less than or equal to 1"), (-0.1, "greater than 0")):
        with pytest.raises(ValueError, match=message):
            SamplingSpec(min_p=bad)
        with pytest.raises(ValueError, match=message):
            SamplingParams(min_p=bad)


def test_sample_keys_made_before_min_p_existed_are_made_again_without_it() -> None:
    """The shard in tests/fixtures/samples was written before divtrace knew min_p: its keys come out again from
    today's SamplingParams (min_p unset) with the rest of its records; setting min_p gives other keys."""
    fixture = Path(__file__).parents[1] / "fixtures" / "samples" / "generated-shard.jsonl"
    records = [json.loads(line) for line in fixture.read_text().splitlines()]
    params = SamplingParams(k=2, temperature=0.8, top_p=0.95, max_new_tokens=4, seed=4)
    for record in records:
        stored = record["sampling"]
        backend = {key: value for key, value in stored.items() if key not in params.as_record()}
        assert stored == {**params.as_record(), **backend} and "min_p" not in stored
        keyed = {key: value for key, value in {**params.as_record(), **backend}.items() if key not in UNKEYED_SAMPLING}
        assert record_keys(record, params, keyed) == record["sample_keys"]
        with_min_p = {**keyed, **params.model_copy(update={"min_p": 0.05}).as_record()}
        assert record_keys(record, params, with_min_p) != record["sample_keys"]


def record_keys(record: dict[str, Any], params: SamplingParams, keyed_sampling: dict[str, Any]) -> list[str]:
    """The sample keys of ``record``'s prompt drawn with ``params`` (seeds derived from them) and the keyed
    ``sampling`` given, as the runner computes them."""
    seeds = [sample_seed(params.seed, record["prompt_id"], k) for k in range(params.k)]
    assert seeds == record["sample_seeds"]
    model_ref, rendered = record["model_ref"], record["rendered_prompt"]
    return [sample_key(model_ref, rendered, keyed_sampling, seed, k) for k, seed in enumerate(seeds)]


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("a\nb", ("\n",), "a"),
        ("answer: 4\n\nQuestion: next", ("\n\nQuestion:", "\n"), "answer: 4"),  # the first occurrence of any
        ("no stop here", ("\n",), None),
        ("stop first", ("stop",), ""),
        ("text", (), None),
    ],
)
def test_cut_at_stop(text: str, stop: tuple[str, ...], expected: str | None) -> None:
    assert cut_at_stop(text, stop) == expected
