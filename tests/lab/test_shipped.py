"""The tiny lineage divtrace ships: gemma-3-270m base -> SFT -> DPO, adapters built by ``divtrace lab build`` from
the packaged recipe ``divtrace/lab/recipes/tiny_lineage.yaml`` and shipped as package data
(``divtrace/lab/shipped/tiny-lineage/STAGE/``), named ``quickstart:gemma-3-270m-sft`` and ``-dpo``.

The registry and the files are checked in a second; the test that samples gemma-3-270m with the DPO adapter is slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from divtrace.generate.models import (
    QUICKSTART_ADAPTERS,
    TINY_LINEAGE,
    quickstart_adapter,
    resolve_adapter,
    shipped_adapter_dir,
)
from divtrace.lab.recipe import load_recipe
from divtrace.study import CheckpointSpec

SRC = Path(__file__).resolve().parents[2] / "src" / "divtrace"
RECIPE = SRC / "lab" / "recipes" / "tiny_lineage.yaml"
BASE = "quickstart:gemma-3-270m"
STAGES = {"sft": "quickstart:gemma-3-270m-sft", "dpo": "quickstart:gemma-3-270m-dpo"}
#: What a shipped stage's directory holds: the PEFT adapter and the lab's card (not its data, not its marker).
SHIPPED_FILES = {"adapter_config.json", "adapter_model.safetensors", "card.json", "card.md"}


def test_the_registry_resolves_both_shipped_adapters_to_their_package_data() -> None:
    digests = set()
    for stage, ref in STAGES.items():
        entry = quickstart_adapter(ref)
        assert entry is QUICKSTART_ADAPTERS[ref.removeprefix("quickstart:")]
        assert (entry.base, entry.stage, entry.package) == (BASE, stage, "divtrace")
        adapter = resolve_adapter(ref)
        assert adapter.path == (SRC / "lab" / "shipped" / TINY_LINEAGE / stage).resolve()
        assert adapter.path == shipped_adapter_dir(TINY_LINEAGE, stage).resolve()
        assert {path.name for path in adapter.path.iterdir()} == SHIPPED_FILES
        assert adapter.rank == 8 and sorted(adapter.config["target_modules"]) == [
            "k_proj",
            "o_proj",
            "q_proj",
            "v_proj",
        ]
        assert list(adapter.identity) == ["adapter_dir_sha256"] and len(adapter.identity["adapter_dir_sha256"]) == 20
        assert resolve_adapter(str(adapter.path)).identity == adapter.identity  # its content, not its name
        digests.add(adapter.identity["adapter_dir_sha256"])
        # a study checkpoint takes it on its base, and refuses it on another model
        assert CheckpointSpec(name=stage, model=BASE, adapter=ref).adapter == ref
        with pytest.raises(ValueError, match=f"adapter: {ref} applies to model {BASE}"):
            CheckpointSpec(name=stage, model="quickstart:smollm2-135m-instruct", adapter=ref)
    assert len(digests) == 2


def test_the_shipped_adapters_are_what_the_packaged_recipe_builds() -> None:
    # Each card holds the recipe entry it was trained from: the packaged recipe still says the same, so the recipe
    # and the shipped adapters cannot drift apart (scripts/rebuild_tiny_lineage.py checks the weights themselves).
    recipe = load_recipe(RECIPE)
    assert recipe.base == BASE and [stage.name for stage in recipe.stages] == ["sft", "dpo"]
    assert recipe.stage("dpo").parent == "sft"
    for stage in ("sft", "dpo"):
        card = json.loads((shipped_adapter_dir(TINY_LINEAGE, stage) / "card.json").read_text(encoding="utf-8"))
        assert card["recipe_entry"] == recipe.stage(stage).model_dump(mode="json")
        assert card["base"]["reference"] == BASE and card["stage"] == stage
        assert card["data"]["rows"] >= 40 and len(card["loss_curve"]) == recipe.stage(stage).steps
    dpo = json.loads((shipped_adapter_dir(TINY_LINEAGE, "dpo") / "card.json").read_text(encoding="utf-8"))
    assert dpo["dpo_reference"] == "the parent (base + sft's adapter)"


@pytest.mark.slow  # two loads of gemma-3-270m and their draws
def test_the_shipped_dpo_adapter_samples_otherwise_than_the_base_and_is_in_model_ref(tmp_path: Path) -> None:
    from divtrace.generate.backends.options import TransformersOptions
    from divtrace.generate.backends.transformers_backend import TransformersGenerator
    from divtrace.generate.job import GenerationJob
    from divtrace.generate.params import SamplingParams
    from divtrace.generate.prompts import PromptItem
    from divtrace.generate.runner import generate_samples
    from divtrace.samples import read_samples

    question = "Question: Tom has 3 apples and buys 4 more. How many apples does he have now?\n\nAnswer:"
    items = [PromptItem("q0", question), PromptItem("q1", "Write a one-sentence story about a lighthouse.")]
    params = SamplingParams(k=2, temperature=1.0, max_new_tokens=4, seed=7)
    cpu = TransformersOptions(threads=2, device="cpu")
    drawn = {}
    for name, options in (("base", cpu), ("dpo", cpu.with_defaults(adapter=STAGES["dpo"]))):
        generator = TransformersGenerator(BASE, options)
        job = GenerationJob.of(items, params, out_dir=tmp_path / name, checkpoint=name, task="t", shard_size=2)
        generate_samples(generator, job)
        generator.close()
        drawn[name] = read_samples(tmp_path / name / "samples" / name / "t").records
    digest = resolve_adapter(STAGES["dpo"]).identity
    for plain, tuned in zip(drawn["base"], drawn["dpo"], strict=True):
        assert plain.sample_seeds == tuned.sample_seeds and plain.rendered_prompt == tuned.rendered_prompt
        assert tuned.model_ref == {**(plain.model_ref or {}), **digest}
        assert "adapter_dir_sha256" not in (plain.model_ref or {})
    assert [r.outputs for r in drawn["base"]] != [r.outputs for r in drawn["dpo"]]  # same seeds, other weights
