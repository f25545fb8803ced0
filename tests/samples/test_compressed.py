"""Gzip-compressed sample files are read as their content, found by the gzip magic bytes whatever their name."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from divtrace.errors import SampleFormatError
from divtrace.samples import read_samples
from divtrace.samples.compressed import uncompressed_name
from divtrace.samples.reader import detect_format, resolve_format
from tests.samples.test_importers import lmeval_line, write_lmeval


def write_plain(path: Path, n: int = 3) -> Path:
    lines = [{"prompt_id": f"p{i}", "prompt": f"q {i}", "outputs": [f"a {i}", f"b {i}", "c"]} for i in range(n)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def gzipped(plain: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(plain.read_bytes()))
    return target


def test_gzip_jsonl_reads_as_the_plain_file_whatever_its_name(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    plain = write_plain(tmp_path / "plain" / "base.jsonl")
    expected = read_samples(plain).records
    assert {record.checkpoint for record in expected} == {"base"}
    for name in ("base.jsonl.gz", "base.JSONL.GZ", "base.jsonl", "base"):  # the content tells, not the name
        path = gzipped(plain, tmp_path / name)
        assert resolve_format(path) == "jsonl"
        assert read_samples(path).records == expected, name
        assert read_samples(path, fmt="jsonl").records == expected
        assert read_samples(path, fmt="divtrace").records == expected
        path.unlink()
    directory = tmp_path / "dir"
    directory.mkdir()
    gzipped(plain, directory / "base.jsonl.gz")
    assert detect_format(directory / "base.jsonl.gz") == "jsonl"
    assert read_samples(directory).records == expected  # a directory's .jsonl.gz files are sample files


def test_a_gzip_lmeval_log_keeps_its_task_and_model_from_the_names(tmp_path: Path) -> None:
    log = write_lmeval(tmp_path, "org__base-7b", "gsm8k_cot", [lmeval_line(i) for i in range(2)])
    expected = read_samples(log).records
    compressed = gzipped(log, log.with_name(log.name + ".gz"))
    log.unlink()
    assert uncompressed_name(compressed.name) == log.name and detect_format(compressed) == "lm-eval"
    records = read_samples(compressed).records
    assert [(r.checkpoint, r.task) for r in records] == [("org__base-7b", "gsm8k_cot")] * 2
    assert [r.model_copy(update={"origin": None}) for r in records] == [
        r.model_copy(update={"origin": None}) for r in expected
    ]


def test_damaged_or_non_utf8_gzip_data_names_the_line(tmp_path: Path) -> None:
    plain = write_plain(tmp_path / "base.jsonl", n=200)
    whole = gzip.compress(plain.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SampleFormatError, match=r"cut.jsonl.gz, line \d+: damaged gzip data") as caught:
        read_samples(cut)
    kept = read_samples(cut, skip_invalid=True)
    assert 0 < len(kept.records) < 200 and [p.line for p in kept.problems] == [caught.value.line]
    latin1 = tmp_path / "latin1.jsonl.gz"
    line = b'{"prompt_id": "1", "prompt": "caf\xe9", "outputs": ["a", "b"]}\n'
    latin1.write_bytes(gzip.compress(line))
    offset = line.index(b"\xe9")
    with pytest.raises(SampleFormatError) as caught:
        read_samples(latin1)
    assert str(caught.value) == (
        f"{latin1}, line 1: not UTF-8 text (byte 0xe9 at byte offset {offset} of the decompressed data): save the "
        "file as UTF-8"
    )


def test_the_gzip_module_is_what_reads_them(tmp_path: Path) -> None:
    """A file compressed by the gzip command line (a name and a time in its header) reads the same."""
    if shutil.which("gzip") is None:
        pytest.skip("no gzip command here")
    import subprocess

    plain = write_plain(tmp_path / "base.jsonl")
    expected = read_samples(plain).records
    subprocess.run(["gzip", "-k", str(plain)], check=True)
    assert read_samples(tmp_path / "base.jsonl.gz").records == expected
