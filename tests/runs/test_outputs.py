"""A unit's outputs in its marker (:mod:`divtrace.runs.outputs`): recorded with size and sha256, and a unit whose
recorded files are missing, truncated or changed is not done; a marker that records none (an older divtrace's)
counts when its outputs are there and readable; a stage reading another's unit refuses one that is not complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from divtrace.fingerprint import file_digest
from divtrace.runs.layout import RunLayout, read_table
from divtrace.runs.markers import OutputFile, mark_done, marker_for, read_marker
from divtrace.runs.outputs import (
    IncompleteInputError,
    UnreadableOutputError,
    check_input,
    output_files,
    record_outputs,
    unit_state,
)


def table_unit(root: Path) -> tuple[Path, Path]:
    """A finished unit of one Parquet file, its marker recording it: (output, marker)."""
    output = root / "scores" / "base" / "t.parquet"
    output.parent.mkdir(parents=True)
    pd.DataFrame({"value": [0.5, 0.25, 0.125]}).to_parquet(output)
    marker = marker_for(output)
    mark_done(marker, "key", record_outputs(root, (output,), marker), rows=3)
    return output, marker


def test_a_marker_records_each_output_file_with_its_size_and_digest(tmp_path: Path) -> None:
    output, marker = table_unit(tmp_path)
    content = json.loads(marker.read_text())
    recorded = {"path": "scores/base/t.parquet", "size": output.stat().st_size}
    assert content == {
        "fingerprint": "key",
        "outputs": [{**recorded, "sha256": hashlib.sha256(output.read_bytes()).hexdigest()}],
        "rows": 3,
    }
    found = read_marker(marker)
    assert found is not None and found.facts == {"rows": 3}
    assert found.outputs == (OutputFile("scores/base/t.parquet", output.stat().st_size, file_digest(output)),)
    assert unit_state(tmp_path, marker, "key", (output,)).done
    assert not unit_state(tmp_path, marker, "other key", (output,)).done  # no damage: only another key


def test_a_directory_output_is_its_files_but_hidden_ones_and_the_marker(tmp_path: Path) -> None:
    directory = tmp_path / "analysis"
    (directory / "sub").mkdir(parents=True)
    for name in ("b.csv", "a.parquet", "sub/c.json", ".a.parquet.1f2e.tmp", "_complete.json"):
        (directory / name).write_text(name)
    marker = marker_for(directory)
    files = [directory / "a.parquet", directory / "b.csv", directory / "sub/c.json"]
    assert output_files((directory,), marker) == files
    names = [item.path for item in record_outputs(tmp_path, (directory,), marker)]
    assert names == ["analysis/a.parquet", "analysis/b.csv", "analysis/sub/c.json"]


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda path: path.unlink(), "is missing"),
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "is truncated (100 of {size} bytes)"),
        (lambda path: path.write_bytes(path.read_bytes() + b"x"), "has changed ({bigger} bytes, {size} recorded)"),
        (
            lambda path: path.write_bytes(path.read_bytes()[:-1] + b"?"),
            "has changed (its bytes differ from those recorded)",
        ),
    ],
    ids=["missing", "truncated", "grown", "same size, other bytes"],
)
def test_a_unit_whose_recorded_output_is_damaged_is_not_done(tmp_path: Path, damage: object, what: str) -> None:
    output, marker = table_unit(tmp_path)
    size = output.stat().st_size
    damage(output)  # type: ignore[operator]
    state = unit_state(tmp_path, marker, "key", (output,))
    assert not state.done
    [found] = state.damage
    assert str(found) == "scores/base/t.parquet " + what.format(size=size, bigger=size + 1)
    assert found.present == output.exists()


def test_sizes_alone_miss_other_bytes_of_the_same_size(tmp_path: Path) -> None:
    output, marker = table_unit(tmp_path)
    output.write_bytes(output.read_bytes()[:-1] + b"?")
    assert unit_state(tmp_path, marker, "key", (output,), digests=False).done
    assert not unit_state(tmp_path, marker, "key", (output,)).done


def test_an_older_marker_counts_when_its_outputs_are_there_and_readable(tmp_path: Path) -> None:
    output, marker = table_unit(tmp_path)
    marker.write_text(json.dumps({"fingerprint": "key", "rows": 3}))  # written before outputs were recorded
    state = unit_state(tmp_path, marker, "key", (output,))
    assert state.done and not state.recorded and read_marker(marker).outputs is None  # type: ignore[union-attr]
    output.write_bytes(output.read_bytes()[:200])
    [found] = unit_state(tmp_path, marker, "key", (output,)).damage
    assert str(found).startswith("scores/base/t.parquet is not readable (")
    output.unlink()
    [found] = unit_state(tmp_path, marker, "key", (output,)).damage
    assert str(found) == "scores/base/t.parquet is missing"


def test_a_reader_refuses_an_input_unit_that_is_not_complete(tmp_path: Path) -> None:
    output, marker = table_unit(tmp_path)
    check_input(tmp_path, marker, "analyze", output)
    output.write_bytes(output.read_bytes()[:100])
    with pytest.raises(IncompleteInputError, match=r"^analyze needs scores/base/t\.parquet is truncated .*rerun the"):
        check_input(tmp_path, marker, "analyze", output)
    marker.unlink()
    with pytest.raises(IncompleteInputError, match=r"needs scores/base/t\.parquet, which is not finished \(no t.json"):
        check_input(tmp_path, marker, "analyze", output)
    output.unlink()
    check_input(tmp_path, marker, "analyze", output, required=False)  # nothing there: nothing to read
    with pytest.raises(IncompleteInputError, match="not finished"):
        check_input(tmp_path, marker, "analyze", output)


def test_reading_a_damaged_table_or_shard_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    output, _ = table_unit(tmp_path)
    output.write_bytes(output.read_bytes()[:100])
    with pytest.raises(UnreadableOutputError, match=r"t\.parquet cannot be read \(ArrowInvalid: .*\): delete it and"):
        read_table(output)
    layout = RunLayout(tmp_path)
    shard = layout.shard_file("base", "t", 0)
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"PAR1 not really")
    with pytest.raises(UnreadableOutputError, match=r"shard-00000\.parquet cannot be read .*it will be redone"):
        layout.read_samples("base", "t")


def test_a_damaged_output_is_set_aside_under_damaged(tmp_path: Path) -> None:
    output, _ = table_unit(tmp_path)
    content = output.read_bytes()
    moved = RunLayout(tmp_path).set_aside(output)
    assert moved == tmp_path / "damaged" / "scores" / "base" / "t.parquet" and moved.read_bytes() == content
    assert not output.exists()
