"""Sample files on disk: JSONL and Parquet round trips, validation errors, --skip-invalid, directories."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divtrace.errors import SampleFormatError
from divtrace.samples import DEFAULT_TASK, ReadResult, SampleRecord, read_samples, write_samples
from divtrace.samples.jsonl import iter_jsonl_records
from divtrace.samples.validate import record_from_dict


def full_record(prompt_id: str = "p1", **overrides: object) -> SampleRecord:
    """A record with every field set, unicode included, and an unknown field."""
    data: dict[str, object] = {
        "prompt_id": prompt_id,
        "prompt": "Écris un haïku sur la mer 🌊\nLigne 2",
        "outputs": ["<think>hmm</think>Vagues…", "海の音", "", 'tab\tand "quotes"'],
        "checkpoint": "olmo3-7b-sft",
        "task": "poems",
        "sample_seeds": [0, 1, 2, 3],
        "finish_reasons": ["stop", "length", None, "stop"],
        "output_tokens": [12, 512, 0, 7],
        "reasoning": ["hmm", None, None, None],
        "responses": ["Vagues…", "海の音", "", 'tab\tand "quotes"'],
        "sampling": {"temperature": 0.7, "top_p": 0.95, "stop": ["\n\n"], "thinking": True, "seed": None},
        "model_ref": {"id": "allenai/Olmo-3-7B", "revision": "abc123"},
        "references": {"answer": "42", "tests": [{"in": 1, "out": 2}]},
        "run_note": {"nested": ["ü", 1.5, None]},
    }
    data.update(overrides)
    return SampleRecord.model_validate(data)


def sparse_record(prompt_id: str = "p2") -> SampleRecord:
    """Only the required fields: every optional field is null."""
    return SampleRecord(prompt_id=prompt_id, prompt="2+2?", outputs=["4", "four"], checkpoint="base", task="t")


def heterogeneous_records() -> list[SampleRecord]:
    """Records whose dict fields have different shapes, plus one with an extra field set to None."""
    return [
        full_record("a"),
        sparse_record("b"),
        full_record("c", sampling={"backend": "vllm", "version": "0.6.3"}, references=None, run_note=None),
        full_record("d", model_ref={"file_sha256": "ff" * 32}, reasoning=None, finish_reasons=None),
    ]


def write_lines(path: Path, lines: list[object]) -> Path:
    """Write one JSON value (or raw string) per line."""
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def good(prompt_id: object = "p", **extra: object) -> dict[str, object]:
    return {"prompt_id": prompt_id, "prompt": "Q", "outputs": ["a", "b"], **extra}


def assert_names(error: SampleFormatError, path: Path, line: int | None, field: str | None) -> None:
    """The message names the file, the line and the field, and the attributes agree."""
    message = str(error)
    assert str(path) in message
    assert error.path == str(path)
    assert error.line == line
    if line is not None:
        assert f"line {line}" in message
    assert error.field == field
    if field is not None:
        assert f"field '{field}'" in message


# --- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_round_trip_keeps_every_field(tmp_path: Path, suffix: str) -> None:
    records = heterogeneous_records()
    path = tmp_path / f"samples{suffix}"
    write_samples(records, path)
    result = read_samples(path, strip_thinking=False)  # the file as stored (stripping derives fields)
    assert result.problems == []
    assert result.records == records
    assert [r.model_dump() for r in result.records] == [r.model_dump() for r in records]
    # an extra field explicitly None stays present; one never set stays absent
    assert "run_note" in result.records[2].model_dump() and result.records[2].run_note is None
    assert "run_note" not in result.records[1].model_dump()


def test_round_trip_jsonl_to_parquet_to_jsonl(tmp_path: Path) -> None:
    records = heterogeneous_records()
    write_samples(records, tmp_path / "a.jsonl")
    write_samples(read_samples(tmp_path / "a.jsonl", strip_thinking=False).records, tmp_path / "b.parquet")
    write_samples(read_samples(tmp_path / "b.parquet", strip_thinking=False).records, tmp_path / "c.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_records_read_with_stripping_round_trip_unchanged(tmp_path: Path, suffix: str) -> None:
    """Reading derives responses and thinking_unclosed once; written and read again, nothing changes."""
    write_samples(heterogeneous_records(), tmp_path / "a.jsonl")
    first = read_samples(tmp_path / "a.jsonl").records
    assert first[1].responses == ["4", "four"] and first[1].thinking_unclosed == [False, False]
    assert first[0].responses == full_record("a").responses  # responses already there are kept
    write_samples(first, tmp_path / f"b{suffix}")
    assert read_samples(tmp_path / f"b{suffix}").records == first


def test_parquet_column_types(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    write_samples(heterogeneous_records(), path)
    schema = pq.read_schema(path)
    assert schema.field("outputs").type == pa.list_(pa.string())
    assert schema.field("responses").type == pa.list_(pa.string())
    assert schema.field("thinking_unclosed").type == pa.list_(pa.bool_())
    assert schema.field("output_tokens").type == pa.list_(pa.int64())
    for name in ("sampling", "model_ref", "references", "run_note"):
        assert schema.field(name).type == pa.string()
    table = pq.read_table(path)
    assert json.loads(table.column("sampling")[2].as_py()) == {"backend": "vllm", "version": "0.6.3"}
    assert table.column("references")[2].as_py() is None


def test_jsonl_is_utf8_text_one_record_per_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_samples([full_record()], path)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == 1
    assert "海の音" in text  # not \u-escaped


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "out" / "s.jsonl"
    write_samples([full_record()], path)
    before = path.read_bytes()

    def exploding():
        yield full_record("x")
        raise RuntimeError("generator died half way")

    with pytest.raises(RuntimeError):
        write_samples(exploding(), path)
    assert path.read_bytes() == before
    with pytest.raises(RuntimeError):
        write_samples(exploding(), tmp_path / "out" / "s.parquet")
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.jsonl"]


def test_write_samples_rejects_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv"):
        write_samples([full_record()], tmp_path / "s.csv")


# --- a plain file with just the required fields -------------------------------------------------------------


def test_minimal_jsonl_gets_checkpoint_from_stem_and_default_task(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "my-model.jsonl", [good("1"), "", "   ", good(2)])
    result = read_samples(path)
    assert [(r.prompt_id, r.checkpoint, r.task) for r in result.records] == [
        ("1", "my-model", DEFAULT_TASK),
        ("2", "my-model", DEFAULT_TASK),  # an integer prompt_id becomes a string
    ]


def test_arguments_fill_missing_checkpoint_and_task_only(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", [good("1"), good("2", checkpoint="own", task="own-task")])
    records = read_samples(path, checkpoint="ck", task="math").records
    assert [(r.checkpoint, r.task) for r in records] == [("ck", "math"), ("own", "own-task")]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(good("1")).encode() + b"\r\n" + json.dumps(good("2")).encode())
    assert [r.prompt_id for r in read_samples(path).records] == ["1", "2"]


# --- bad input: each error names the file, the line and the field --------------------------------------------

BAD_RECORDS = [
    pytest.param('{"prompt_id": "x", "prompt": "Q", "outputs": ["a", "b"]', None, "malformed JSON", id="malformed"),
    pytest.param("[1, 2]", None, "JSON object", id="not-an-object"),
    pytest.param({"prompt_id": "x", "prompt": "Q"}, "outputs", "missing", id="missing-outputs"),
    pytest.param(good(outputs="a b"), "outputs", "list of strings", id="outputs-a-string"),
    pytest.param(good(outputs=["a", "b", "c", 4]), "outputs[3]", "outputs[3] is a number", id="outputs-item-int"),
    pytest.param(good(outputs=["a", None]), "outputs[1]", "outputs[1] is a null", id="outputs-item-null"),
    pytest.param(good(outputs=["only one"]), "outputs", "K >= 2", id="one-output"),
    pytest.param(good(outputs=[]), "outputs", "K >= 2", id="no-outputs"),
    pytest.param({"prompt": "Q", "outputs": ["a", "b"]}, "prompt_id", "missing", id="missing-prompt-id"),
    pytest.param(good(prompt_id=["x"]), "prompt_id", "string or an integer", id="prompt-id-list"),
    pytest.param(good(prompt_id=True), "prompt_id", "string or an integer", id="prompt-id-bool"),
    pytest.param(good(prompt_id=""), "prompt_id", "empty", id="prompt-id-empty"),
    pytest.param({"prompt_id": "x", "outputs": ["a", "b"]}, "prompt", "missing", id="missing-prompt"),
    pytest.param(good(prompt=3), "prompt", "must be a string", id="prompt-int"),
    pytest.param(good(responses=["a"]), "responses", "has 1 item(s) but outputs has 2", id="responses-length"),
    pytest.param(
        good(thinking_unclosed=[True]), "thinking_unclosed", "has 1 item(s) but outputs has 2", id="unclosed-length"
    ),
    pytest.param(good(output_tokens=[1, 2, 3]), "output_tokens", "one item per output", id="tokens-length"),
    pytest.param(good(sample_seeds=["s", 1]), "sample_seeds[0]", "valid integer", id="seed-not-int"),
    pytest.param(good(sampling=[1]), "sampling", "valid dictionary", id="sampling-not-dict"),
    pytest.param(good(checkpoint=5), "checkpoint", "valid string", id="checkpoint-int"),
]


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_RECORDS)
def test_bad_record_raises_naming_file_line_field(tmp_path: Path, bad: object, field: str | None, reason: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [good("ok1"), "", bad, good("ok2")])
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert_names(info.value, path, 3, field)
    assert reason in info.value.reason


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_RECORDS)
def test_skip_invalid_keeps_good_records_and_lists_problems(
    tmp_path: Path, bad: object, field: str | None, reason: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [good("ok1"), "", bad, good("ok2")])
    result = read_samples(path, skip_invalid=True)
    assert isinstance(result, ReadResult)
    assert [r.prompt_id for r in result.records] == ["ok1", "ok2"]
    assert len(result.problems) == 1
    assert_names(result.problems[0], path, 3, field)


def test_skip_invalid_lists_every_problem_with_its_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "s.jsonl",
        [good("1"), "{oops", good("2", outputs=["x"]), good("3"), good("4", prompt=None), good("5")],
    )
    result = read_samples(path, skip_invalid=True)
    assert [r.prompt_id for r in result.records] == ["1", "3", "5"]
    assert [(p.line, p.field) for p in result.problems] == [(2, None), (3, "outputs"), (5, "prompt")]


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    for name, content in [("empty.jsonl", b""), ("blank.jsonl", b"\n  \n\n")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(SampleFormatError) as info:
            read_samples(path)
        assert_names(info.value, path, None, None)
        assert "empty" in str(info.value)
        result = read_samples(path, skip_invalid=True)
        assert result.records == [] and [p.path for p in result.problems] == [str(path)]


def test_empty_parquet_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    write_samples([], path)
    with pytest.raises(SampleFormatError, match="empty"):
        read_samples(path)


def test_not_utf8_names_the_line_and_keeps_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    lines = [
        json.dumps(good("1")),
        json.dumps(good("2")),
        '{"prompt_id": "3", "prompt": "caf\xe9", "outputs": ["a", "b"]}',
    ]
    path.write_bytes("\n".join(lines[:2]).encode() + b"\n" + lines[2].encode("latin-1") + b"\n" + b"{}\n")
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert_names(info.value, path, 3, None)
    offset = len("\n".join(lines[:2])) + 1 + lines[2].index("\xe9")
    assert info.value.reason == f"not UTF-8 text (byte 0xe9 at byte offset {offset}): save the file as UTF-8"
    result = read_samples(path, skip_invalid=True)
    assert [r.prompt_id for r in result.records] == ["1", "2"]
    assert [(p.line, "UTF-8" in p.reason) for p in result.problems] == [(3, True)]


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(SampleFormatError, match="no such file"):
        read_samples(tmp_path / "nope.jsonl")
    odd = tmp_path / "samples.csv"
    odd.write_text("a,b\n")
    with pytest.raises(SampleFormatError, match="unknown sample file type"):
        read_samples(odd)
    with pytest.raises(ValueError, match="unknown sample format"):
        read_samples(odd, fmt="csv")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    path.write_text("not parquet")
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert_names(info.value, path, None, None)


def test_foreign_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "foreign.parquet"
    table = pa.table(
        {
            "prompt_id": ["a", "b", "c"],
            "prompt": ["Q1", "Q2", "Q3"],
            "outputs": [["x", "y"], ["only"], ["x", "z"]],
            "sampling": ['{"temperature": 1.0}', None, "{not json"],
            "model_ref": pa.array([{"id": "m"}, None, {"id": "m"}]),
        }
    )
    pq.write_table(table, path)
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert_names(info.value, path, 2, "outputs")
    result = read_samples(path, skip_invalid=True)
    assert [r.prompt_id for r in result.records] == ["a"]
    assert result.records[0].sampling == {"temperature": 1.0}
    assert result.records[0].model_ref == {"id": "m"}
    assert [(p.line, p.field) for p in result.problems] == [(2, "outputs"), (3, "sampling")]


def test_iter_jsonl_records_numbers_lines_from_one(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", ["", good("a"), "", good("b")])
    assert [n for n, _ in iter_jsonl_records(path)] == [2, 4]


def test_record_from_dict_translates_nested_pydantic_paths() -> None:
    with pytest.raises(SampleFormatError) as info:
        record_from_dict(good(finish_reasons=["stop", 3]), "mem.jsonl", 7, None)
    assert info.value.field == "finish_reasons[1]"
    assert "line 7" in str(info.value)


def test_record_from_dict_does_not_modify_its_input() -> None:
    raw = good(7)
    record = record_from_dict(raw, "mem.jsonl", 1, {"checkpoint": "ck", "task": "t"})
    assert raw == good(7)
    assert (record.prompt_id, record.checkpoint, record.task) == ("7", "ck", "t")


# --- several files -------------------------------------------------------------------------------------------


def test_duplicate_key_across_files_names_both_places(tmp_path: Path) -> None:
    first = write_lines(tmp_path / "a.jsonl", [good("1", checkpoint="m", task="t")])
    second = write_lines(
        tmp_path / "b.jsonl", [good("0", checkpoint="m", task="t"), good("1", checkpoint="m", task="t")]
    )
    with pytest.raises(SampleFormatError) as info:
        read_samples([first, second])
    assert_names(info.value, second, 2, "prompt_id")
    assert f"{first}, line 1" in str(info.value)
    result = read_samples([first, second], skip_invalid=True)
    assert [r.prompt_id for r in result.records] == ["1", "0"]
    assert len(result.problems) == 1


def test_same_prompt_id_in_different_checkpoints_is_fine(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "base.jsonl", [good("1")])
    b = write_lines(tmp_path / "sft.jsonl", [good("1")])
    assert [r.checkpoint for r in read_samples([a, b]).records] == ["base", "sft"]


def test_directory_reads_every_supported_file_sorted(tmp_path: Path) -> None:
    write_samples([full_record("p", checkpoint="z")], tmp_path / "b" / "z.parquet")
    write_lines(tmp_path / "a.jsonl", [good("1")])
    write_lines(tmp_path / "c.json", [good("2")])
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "results_2024-01-01T00-00-00.json").write_text('{\n  "results": {}\n}\n')
    (tmp_path / ".hidden.jsonl").write_text("garbage")
    result = read_samples(tmp_path)
    assert [(r.checkpoint, r.prompt_id) for r in result.records] == [("a", "1"), ("z", "p"), ("c", "2")]
    assert [r.prompt_id for r in read_samples(tmp_path, fmt="jsonl").records] == ["1", "2"]


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SampleFormatError, match="no sample files"):
        read_samples(tmp_path)
