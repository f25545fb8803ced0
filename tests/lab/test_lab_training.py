"""``divtrace lab build`` for real: the packaged gemma-3-270m post-trained base -> SFT -> DPO (LoRA, 2 steps of 2
rows of 32 tokens each), rebuilt without training, rebuilt where the recipe changed; DPO's reference is the parent.
And the command's refusals, before any work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from divtrace.fingerprint import file_digest
from tests.cli.test_cli import assert_user_error, cli
from tests.lab.lab_files import lineage_recipe, tiny_stage, write_recipe

BASE = "quickstart:gemma-3-270m"


def checkpoint_files(out: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in sorted((out / "checkpoints").rglob("*")) if path.is_file()}


def digest(checkpoint: Path) -> str:
    return file_digest(checkpoint / "adapter_model.safetensors")


@pytest.mark.slow
def test_a_lineage_is_built_then_skipped_then_rebuilt_where_it_changed(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    recipe = lineage_recipe(tmp_path, BASE)
    out = tmp_path / "lab"
    first = cli("lab", "build", str(recipe), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "sft: built in" in first.stderr and "dpo: built in" in first.stderr, first.stderr
    assert f"the study: {out / 'study.yaml'}" in first.stderr

    sft_dir, dpo_dir = out / "checkpoints" / "sft", out / "checkpoints" / "dpo"
    for directory in (sft_dir, dpo_dir):
        config = json.loads((directory / "adapter_config.json").read_text())
        assert config["r"] == 8 and sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
        card = json.loads((directory / "card.json").read_text())
        assert [point["step"] for point in card["loss_curve"]] == [1, 2]
        assert all(math.isfinite(point["loss"]) for point in card["loss_curve"])
        assert card["library_versions"]["trl"] == "1.16.0" and card["device"] == "cpu"
        assert card["data"]["rows"] == 6 and card["train_seconds"] > 0
    # DPO's reference is the parent (base + sft's adapter), not the bare base: SFT moved the model away from the
    # base (its adapter's B matrices, zero when it starts, are not), and yet on DPO's first step the policy, which
    # starts as the parent, has the reference's log-probabilities: loss log 2, rewards 0.
    sft_weights = load_file(str(sft_dir / "adapter_model.safetensors"))
    assert any(tensor.abs().max() > 0 for name, tensor in sft_weights.items() if "lora_B" in name)
    first_step = json.loads((dpo_dir / "card.json").read_text())["loss_curve"][0]
    assert first_step["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert first_step["rewards/chosen"] == pytest.approx(0, abs=1e-5)
    assert first_step["rewards/rejected"] == pytest.approx(0, abs=1e-5)
    assert json.loads((dpo_dir / "card.json").read_text())["dpo_reference"] == "the parent (base + sft's adapter)"

    study = yaml.safe_load((out / "study.yaml").read_text())
    assert [(c["name"], c["stage"], c.get("parent"), c.get("adapter")) for c in study["checkpoints"]] == [
        ("base", "base", None, None),
        ("sft", "sft", "base", str(sft_dir.resolve())),
        ("dpo", "dpo", "sft", str(dpo_dir.resolve())),
    ]
    assert {c["model"] for c in study["checkpoints"]} == {BASE}

    first_dpo = digest(dpo_dir)
    built = checkpoint_files(out)
    again = cli("lab", "build", str(recipe), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "sft: skipped" in again.stderr and "dpo: skipped" in again.stderr
    assert "0 stage(s) built, 2 skipped" in again.stderr
    assert not [line for line in again.stderr.splitlines() if line.startswith("train")]  # no training step shown
    assert checkpoint_files(out) == built

    lineage_recipe(tmp_path, BASE, beta=0.2)  # the dpo stage changes
    changed = cli("lab", "build", str(recipe), "--out", str(out))
    assert changed.returncode == 0, changed.stderr
    assert "sft: skipped" in changed.stderr and "dpo: built in" in changed.stderr
    assert "(changed: its recipe entry)" in changed.stderr and "1 stage(s) built, 1 skipped" in changed.stderr
    now = checkpoint_files(out)
    assert {path: mtime for path, mtime in now.items() if sft_dir in path.parents} == {
        path: mtime for path, mtime in built.items() if sft_dir in path.parents
    }
    card = json.loads((dpo_dir / "card.json").read_text())
    assert card["recipe_entry"]["beta"] == 0.2
    assert card["loss_curve"][0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert digest(dpo_dir) != first_dpo

    lineage_recipe(tmp_path, BASE)  # back as it was: trained again, to the same bytes (seeded, float32, CPU)
    reverted = cli("lab", "build", str(recipe), "--out", str(out))
    assert reverted.returncode == 0, reverted.stderr
    assert "dpo: built in" in reverted.stderr and digest(dpo_dir) == first_dpo


def test_the_command_refuses_a_bad_recipe_before_any_work(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {"name": "bad", "base": BASE, "stages": [tiny_stage("dpo", "dpo", "pairs.jsonl", parent="sft")]},
    )
    out = tmp_path / "lab"
    refused = cli("lab", "build", str(recipe), "--out", str(out))
    assert_user_error(refused, f"error: {recipe}: key 'stages.0.parent': unknown stage 'sft' (known: base, dpo)")
    assert not out.exists()
    missing_data = write_recipe(
        tmp_path / "recipe.yaml", {"name": "bad", "base": BASE, "stages": [tiny_stage("sft", "sft", "none.jsonl")]}
    )
    refused = cli("lab", "build", str(missing_data), "--out", str(out))
    assert_user_error(refused, f"error: {recipe}: key 'stages.0.data': {tmp_path / 'none.jsonl'}: no such file")


@pytest.mark.slow
def test_divtrace_run_takes_the_built_lineage_as_it_is(tmp_path: Path) -> None:
    """The lab's study.yaml, cut to 2 prompts x K = 2 x 4 tokens, runs end to end: each adapter checkpoint samples
    as base + its adapter (its own adapter digest in every record), the report traces base -> sft -> dpo."""
    from divtrace.samples import read_samples

    recipe = lineage_recipe(tmp_path, BASE)
    out = tmp_path / "lab"
    assert cli("lab", "build", str(recipe), "--out", str(out)).returncode == 0
    study = yaml.safe_load((out / "study.yaml").read_text())
    study["tasks"] = [{"name": "arithmetic", "n": 2}, {"name": "open_ended", "n": 2}]
    study["sampling"] = {**study["sampling"], "k": 2, "max_new_tokens": 4}
    cut = tmp_path / "study.yaml"
    cut.write_text(yaml.safe_dump(study))
    run = tmp_path / "run"
    result = cli("run", str(cut), "--out", str(run))
    assert result.returncode == 0, result.stderr
    digests = {}
    for checkpoint in ("base", "sft", "dpo"):
        records = read_samples(sorted((run / "samples" / checkpoint / "open_ended").glob("shard-*.parquet"))).records
        digests[checkpoint] = {str((r.model_ref or {}).get("adapter_dir_sha256")) for r in records}
    assert digests["base"] == {"None"} and len(digests["sft"]) == len(digests["dpo"]) == 1
    assert digests["sft"] != digests["dpo"]
    lineage = "| dpo | base \N{RIGHTWARDS ARROW} sft \N{RIGHTWARDS ARROW} dpo |"  # Table 1's row of the lineage
    assert lineage in (run / "report" / "summary.md").read_text(encoding="utf-8")
