"""The declared sample fields (``rendered_prompt``, ``sample_keys``) leave the stored files as they were: a shard
and its JSON Lines copy, generated with the packaged SmolLM2 model before the fields were declared
(tests/fixtures/samples/generated-shard.*), are read and written again and compared with the originals."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from divtrace.samples import SampleRecord, read_samples
from divtrace.samples.jsonl import write_samples_jsonl
from divtrace.samples.parquet import write_samples_parquet

FIXTURES = Path(__file__).parents[1] / "fixtures" / "samples"
SHARD = FIXTURES / "generated-shard.parquet"
JSONL = FIXTURES / "generated-shard.jsonl"


def test_generated_records_carry_typed_rendered_prompts_and_keys() -> None:
    for record in read_samples([SHARD]).records:
        assert record.rendered_prompt is not None and record.rendered_prompt.startswith("<|im_start|>")
        assert record.sample_keys is not None and len(record.sample_keys) == len(record.outputs) == 2
        assert all(len(key) == 64 for key in record.sample_keys)
        assert not record.model_extra  # nothing a generated sample carries is undeclared


def test_a_generated_shard_written_again_is_the_same_table(tmp_path: Path) -> None:
    records = read_samples([SHARD]).records
    again = tmp_path / "shard.parquet"
    write_samples_parquet(records, again)
    before, after = pq.read_table(SHARD), pq.read_table(again)
    assert after.schema.names == before.schema.names  # column order, JSON text columns last as before
    assert after.schema.metadata == before.schema.metadata  # which columns hold JSON text
    assert after.equals(before, check_metadata=True)  # every cell, the JSON text of keys and prompt included


def test_the_jsonl_copy_is_byte_identical(tmp_path: Path) -> None:
    again = tmp_path / "samples.jsonl"
    write_samples_jsonl(read_samples([JSONL]).records, again)
    assert again.read_bytes() == JSONL.read_bytes()
    write_samples_jsonl(read_samples([SHARD]).records[:1], again)
    assert again.read_bytes() == JSONL.read_bytes().splitlines(keepends=True)[0]


def test_records_without_the_fields_are_stored_without_them(tmp_path: Path) -> None:
    plain = SampleRecord(prompt_id="p", prompt="q", outputs=["a", "b"])
    assert "rendered_prompt" not in plain.model_dump() and "sample_keys" not in plain.model_dump()
    write_samples_parquet([plain], tmp_path / "plain.parquet")
    assert "sample_keys" not in pq.read_table(tmp_path / "plain.parquet").schema.names
    explicit = SampleRecord(prompt_id="p", prompt="q", outputs=["a", "b"], rendered_prompt=None)
    assert explicit.model_dump()["rendered_prompt"] is None  # set to None: kept, as an extra field was
    (back,) = read_samples([tmp_path / "plain.parquet"]).records
    assert back.outputs == plain.outputs and back.sample_keys is None and "sample_keys" not in back.model_fields_set
