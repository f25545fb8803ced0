"""Study files and the lineage graph: presets, validation errors naming the key, the starter study, the plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from divtrace.errors import DivtraceError
from divtrace.runs.layout import RunLayout
from divtrace.score.scorer import build_metrics
from divtrace.study import PRESETS, STARTER_STUDY, Study, load_study, parse_study
from divtrace.study.lineage import CheckpointNode, LineageGraph
from divtrace.study.planned import PlannedTask
from divtrace.study.stages import generate_stage
from divtrace.tasks import get_task
from tests.olmo_study import OLMO_INSTRUCT_STUDY


def test_lineage_graph_edges_lineages_and_variants() -> None:
    graph = LineageGraph(
        [
            CheckpointNode("base", "base"),
            CheckpointNode("sft", "sft", "base"),
            CheckpointNode("dpo", "dpo", "sft"),
            CheckpointNode("zero", "rl-zero", "base"),
            CheckpointNode("dpo-nothink", "dpo", variant_of="dpo", thinking="suppressed"),
        ]
    )
    assert graph.edges() == [("base", "sft"), ("sft", "dpo"), ("base", "zero")]
    assert graph.lineages() == {"dpo": ["base", "sft", "dpo"], "zero": ["base", "zero"]}
    assert graph.thinking_pairs() == [("dpo", "dpo-nothink")]
    assert graph.base_of("dpo-nothink") == "base"
    with pytest.raises(DivtraceError, match="defined twice"):
        LineageGraph([CheckpointNode("a", "base"), CheckpointNode("a", "sft")])
    with pytest.raises(DivtraceError, match="cycle"):
        LineageGraph([CheckpointNode("a", "sft", "b"), CheckpointNode("b", "sft", "a")])
    with pytest.raises(DivtraceError, match="parent 'x' is not defined"):
        LineageGraph([CheckpointNode("a", "sft", "x")])


def test_presets() -> None:
    olmo = PRESETS["olmo3-7b"]()
    names = [c.name for c in olmo.checkpoints]
    assert len([c for c in olmo.checkpoints if c.variant_of is None]) == 13
    assert {c.name for c in olmo.checkpoints if c.thinking == "suppressed"} == {
        "think-sft-nothink", "think-dpo-nothink", "think-nothink",
    }  # fmt: skip
    assert olmo.checkpoint("base").model == "allenai/Olmo-3-1025-7B" and len(olmo.tasks) == 15
    assert (olmo.sampling.k, olmo.sampling.temperature, olmo.sampling.top_p, olmo.sampling.seed) == (
        16,
        0.6,
        0.95,
        1234,
    )
    assert olmo.graph().lineages()["think"] == ["base", "think-sft", "think-dpo", "think"]
    assert len(set(names)) == len(names)
    # Scoring as the study's code did: every across-input NLI pair, EAD's V left at 50257 for every checkpoint.
    reloaded = parse_study(yaml.safe_load(olmo.to_yaml()))
    for study in (olmo, reloaded):
        nli = study.nli_settings()
        assert nli is not None and nli.model == "roberta-large-mnli" and nli.pairs_across == "all"
        [ead] = [m for m in build_metrics(study.metrics, nli=nli) if m.name == "ead"]
        assert ead.settings()["vocab_size"] == 50257 and not ead.needs_generator_vocab
    quick = load_study("quickstart")
    # One model's weights and the two adapters divtrace ships: a real lineage, so no caveat.
    assert quick.caveat is None and quick.graph().lineages() == {"dpo": ["base", "sft", "dpo"]}
    assert {c.model for c in quick.checkpoints} == {"quickstart:gemma-3-270m"}
    adapters = [None, "quickstart:gemma-3-270m-sft", "quickstart:gemma-3-270m-dpo"]
    assert [c.adapter for c in quick.checkpoints] == adapters


def test_generation_settings_come_from_the_task_unless_the_study_overrides_them() -> None:
    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)  # gsm8k and writingprompts
    raw["checkpoints"][1]["stops"] = "always"
    raw["tasks"][1].update(stop=["\nTHE END"], max_new_tokens=2000)
    study = parse_study(raw)
    gsm8k, writing = (PlannedTask(spec, get_task(spec.name), [], "") for spec in study.tasks)
    assert study.sampling_for(gsm8k).stop == ("\nQuestion:", "\n\nQuestion")
    assert study.sampling_for(gsm8k).max_new_tokens == 32768
    assert study.sampling_for(writing).stop == ("\nTHE END",) and study.sampling_for(writing).max_new_tokens == 2000
    # a study-wide cap applies to every task but one that sets its own
    capped = parse_study({**raw, "sampling": {**raw["sampling"], "max_new_tokens": 64}})
    assert [capped.sampling_for(PlannedTask(t, get_task(t.name), [], "")).max_new_tokens for t in capped.tasks] == [
        64,
        2000,
    ]
    policies = {c.name: study.render_options(c).stops.value for c in study.checkpoints}
    assert policies == {"base": "auto", "sft": "always", "dpo": "auto"}
    assert parse_study({**raw, "stops": "never"}).render_options(study.checkpoints[2]).stops.value == "never"
    layout = RunLayout("run")

    def generation_keys(of: Study) -> dict[str, str]:
        return {unit.checkpoint: unit.key for unit in generate_stage(of, [gsm8k], layout).units(layout)}

    keys, changed = generation_keys(study), generation_keys(parse_study({**raw, "stops": "never"}))
    assert keys["dpo"] != changed["dpo"] and keys["sft"] == changed["sft"]  # sft's own policy wins


def test_round_trip_and_starter(tmp_path: Path) -> None:
    quick = load_study("quickstart")
    path = tmp_path / "frozen.yaml"
    path.write_text(quick.to_yaml())
    assert load_study(path) == quick
    starter = tmp_path / "study.yaml"
    starter.write_text(STARTER_STUDY)
    study = load_study(starter)
    assert study.graph().lineages() == {"dpo": ["base", "sft", "dpo"]}
    # The starter runs offline: the shipped lineage on the bundled tasks (the quickstart's lineage, settings and tasks).
    assert [(c.name, c.model, c.adapter) for c in study.checkpoints] == [
        (c.name, c.model, c.adapter) for c in quick.checkpoints
    ]
    assert [t.name for t in study.tasks] == ["arithmetic", "open_ended"] and study.sampling == quick.sampling


#: A valid judge section (tests of the study's ``judge:`` validation).
JUDGE = {"endpoint": "http://127.0.0.1:8000/v1", "model": "gpt-4.1-mini"}


def test_a_judge_section_loads_with_the_study_protocols_and_each_lineage_base() -> None:
    from divtrace.study.planned import run_tasks
    from divtrace.study.stages import judge_config

    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    raw["judge"] = dict(JUDGE)
    study = parse_study(raw, "study.yaml")
    config = judge_config(study, run_tasks(study))
    assert config is not None and dict(config.protocols) == {"writingprompts": "arena_hard_creative"}
    assert dict(config.baselines) == {"base": "base", "sft": "base", "dpo": "base"} and config.outputs == "first"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["checkpoints"][1].update(parent="nobody"), "checkpoints.1.parent: 'nobody' is not a checkpoint"),
        (lambda s: s["checkpoints"][0].update(colour="red"), "key 'checkpoints.0.colour': Extra inputs"),
        (lambda s: s["sampling"].update(k=1), "key 'sampling.k'"),
        (lambda s: s["sampling"].update(temperature=0), "key 'sampling.temperature'"),
        (lambda s: s.update(metrics=["ead", "vibes"]), "metrics: unknown \\['vibes'\\]"),
        (lambda s: s.update(metrics=["nli"]), "nli_model: the nli metric needs"),
        (lambda s: s["checkpoints"][0].update(backend="tgi"), "key 'checkpoints.0.backend'"),
        (lambda s: s.pop("tasks"), "key 'tasks': Field required"),
        (lambda s: s.update(stops="sometimes"), "key 'stops'"),
        (lambda s: s["checkpoints"][1].update(stops="often"), "key 'checkpoints.1.stops'"),
        (lambda s: s["tasks"][0].update(stop=[""]), "key 'tasks.0.stop': stop strings must not be empty"),
        (lambda s: s.update(judge={"model": "m"}), "key 'judge.endpoint': Field required"),
        (
            lambda s: s.update(judge={**JUDGE, "protocols": {"writingprompts": "mt_bench"}}),
            "judge.protocols.writingprompts: unknown protocol 'mt_bench'",
        ),
        (
            lambda s: s.update(judge={**JUDGE, "protocols": {"tldr": "kirk_summary"}}),
            "judge.protocols.tldr: not a task of this study",
        ),
        (lambda s: s.update(judge={**JUDGE, "baseline": "nobody"}), "judge.baseline: 'nobody' is not a checkpoint"),
        (lambda s: s.update(judge={**JUDGE, "outputs": "some"}), "key 'judge.outputs'"),
    ],
)
def test_validation_errors_name_the_key(change, message: str) -> None:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    change(raw)
    with pytest.raises(DivtraceError, match=message):
        parse_study(raw, "study.yaml")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncheckpoints: [\n")
    with pytest.raises(DivtraceError, match=r"bad.yaml, line \d+: not valid YAML"):
        load_study(path)
    with pytest.raises(DivtraceError, match="no such study file"):
        load_study(tmp_path / "missing.yaml")


def test_cli_init_lineages_and_dry_run(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "divtrace.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path, env={"COLUMNS": "250", "PATH": ""})  # fmt: skip

    assert cli("init").returncode == 0 and (tmp_path / "study.yaml").exists()
    assert cli("init").returncode == 2  # never overwrites silently
    shown = cli("lineages")
    assert "olmo3-7b" in shown.stdout and "quickstart" in shown.stdout and "base -> think-sft" in shown.stdout
    assert "lineage dpo: base -> sft -> dpo" in shown.stdout and "quickstart:gemma-3-270m-dpo" in shown.stdout
    assert "caveat" not in shown.stdout  # the quickstart is one lineage
    plan = cli("run", "--dry-run", "--out", str(tmp_path / "run"))
    assert plan.returncode == 0, plan.stderr
    assert "gemma-3-270m" in plan.stdout and "open_ended" in plan.stdout and "arithmetic" in plan.stdout
    assert "samples to generate" in plan.stdout and "to do" in plan.stdout
    assert not (tmp_path / "run" / "samples").exists()  # a dry run does nothing


def test_dry_run_without_task_data_plans_from_the_study(tmp_path: Path) -> None:
    """Offline, the olmo3-7b tasks cannot load: --dry-run still plans (each task's N), a real run refuses."""
    env = {"COLUMNS": "250", "PATH": "", "HF_ENDPOINT": "http://127.0.0.1:9", "DIVTRACE_DATA_DIR": str(tmp_path)}
    plan = subprocess.run([sys.executable, "-m", "divtrace.cli", "run", "olmo3-7b", "--dry-run"], capture_output=True,
                          text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    # it opens with the totals: 16 checkpoints x K=16 x the 15 tasks' N (500 x 13 + 164 + 479) = 1,828,608 samples,
    # an estimate that says it is a guess (the GPU rate is assumed)
    assert lines[0].startswith("plan of study olmo3-7b -> runs/olmo3-7b: 16 checkpoint(s) x 15 task(s)")
    assert lines[1].startswith("1,828,608 samples to generate") and "a guess" in lines[1]
    assert lines[2].startswith("  generation ~") and "model loading ~" in lines[2] and "score ~" in lines[2]
    # then the notes that matter: the task data is a short note (no hub error text), the assumed rate
    data = next(i for i, line in enumerate(lines) if line.startswith("note: task data is not available here"))
    assert "DIVTRACE_DATA_DIR" in " ".join(lines[data : data + 3]) and "Provide it offline" not in plan.stdout
    assert "Traceback" not in plan.stderr and "Couldn't reach" not in plan.stderr + plan.stdout
    assert "note: no measured rate for 7B on vllm/gpu; assumed 2,500 tok/s" in plan.stdout
    # then one line per checkpoint, each at the assumed vLLM GPU rate, which says it is assumed
    assert plan.stdout.count("at 2,500 tok/s (assumed)") == 16 and len(lines) < 40
    assert "task(s)" not in "".join(lines[1:]) and "--detail" in lines[-1]  # the rows only on request
    detail = subprocess.run([sys.executable, "-m", "divtrace.cli", "run", "olmo3-7b", "--dry-run", "--detail"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert detail.stdout.count("│ 15 task(s)") == 16 and detail.stdout.count("humaneval") == 16
    # the study's token caps: per checkpoint and sample, 32768 x (500 x 11 tasks + 164 + 479) + 2048 x 500
    # (CRUXEval) + 512 x 500 (TruthfulQA) = 202,573,824 tokens; x K = 16 x 16 checkpoints
    assert "at most 51,858,898,944 tokens" in plan.stdout
    assert "~5,762 GPU-hours" in plan.stdout  # 51,858,898,944 tokens / 2,500 tok/s / 3600 s, one GPU per model
    run = subprocess.run([sys.executable, "-m", "divtrace.cli", "run", "olmo3-7b", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert run.returncode == 2 and "Provide it offline" in run.stderr
    assert not (tmp_path / "r" / "samples").exists()


def test_names_that_share_a_run_directory_or_are_too_long_are_refused_at_load(tmp_path: Path) -> None:
    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    raw["checkpoints"][1]["name"] = "sft/v2 final"
    raw["checkpoints"][2].update(name="sft_v2_final", parent="sft/v2 final")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DivtraceError, match=r"study.yaml: checkpoints 'sft/v2 final' and 'sft_v2_final' would be "
                       r"stored under one name, 'sft_v2_final', in the run directory"):  # fmt: skip
        load_study(path)

    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    raw["checkpoints"][0]["name"] = "b" * 300
    raw["checkpoints"][1]["parent"] = "b" * 300
    with pytest.raises(DivtraceError, match=r"checkpoint 'b{48}'… \(300 characters\) is too long"):
        parse_study(raw, "study.yaml")


def test_a_task_file_is_checked_by_the_name_it_holds(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"q": "2+2?"}\n')
    long_task = tmp_path / "long.yaml"
    long_task.write_text(f"name: {'t' * 300}\nprompts: prompts.jsonl\ntemplate: '{{q}}'\n")
    short_task = tmp_path / ("d" * 200) / "short.yaml"  # a long path, a short name: fine
    short_task.parent.mkdir()
    short_task.write_text(f"name: short\nprompts: {prompts}\ntemplate: '{{q}}'\n")
    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    raw["tasks"] = [{"name": str(short_task)}]
    assert parse_study(raw).tasks[0].name == str(short_task)
    raw["tasks"] = [{"name": str(long_task)}, {"name": "arithmetic"}]
    with pytest.raises(DivtraceError, match=r"task 't{48}'… \(300 characters\) is too long"):
        parse_study(raw, "study.yaml")
