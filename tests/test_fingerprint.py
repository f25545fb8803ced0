"""Stored digests stay byte-identical: the literals below were computed with the code before divtrace.fingerprint.

Markers, sample keys, settings fingerprints and model directory digests are on users' disks; a change here
silently invalidates every cache and resumed run.
"""

from __future__ import annotations

from pathlib import Path

from divtrace.cache import directory_fingerprint
from divtrace.fingerprint import file_digest, files_fingerprint, fingerprint
from divtrace.generate.models import file_sha256
from divtrace.generate.store import sample_key
from divtrace.score.settings import EmbedderSettings, NLISettings


def _model_dir(root: Path) -> Path:
    (root / "sub").mkdir()
    (root / "a.bin").write_bytes(bytes(range(256)) * 5000)  # 1.28 MB: more than one read block
    (root / "sub" / "b.txt").write_text("weights ü\n")
    (root / "README.md").write_text("ignored")
    return root


def test_marker_fingerprint_is_unchanged() -> None:
    value = {"inputs": "abc", "settings": {"b": 1, "a": [1, 2.5, None], "é": "ü"}, "path": Path("x/y")}
    assert fingerprint(value) == "f0757685e0b263bbdca06ddbd4d5c3e633f175760227ded905a922770148b564"


def test_sample_key_is_unchanged() -> None:
    key = sample_key({"id": "m", "revision": "r"}, "héllo ✓ prompt", {"temperature": 1.0, "top_p": 0.95}, 7, 3)
    assert key == "2dc1c12ecf15a927de65c1690d5d6d0e252c747768e6417d06cdbc126d339ba0"


def test_settings_fingerprints_are_unchanged() -> None:
    assert EmbedderSettings().fingerprint() == "31f222a6d02e6922"
    assert NLISettings().fingerprint() == "4b7c7c34dc7f0b74"  # changed on purpose: max_across_pairs -> pairs_across


def test_file_digests_are_unchanged(tmp_path: Path) -> None:
    root = _model_dir(tmp_path)
    assert files_fingerprint([root / "sub" / "b.txt", root / "a.bin"]) == (
        "b885de486b4cdc00d046b48e68a650ba8ec8324ec5ebdbb85241b3369ff453f8"
    )
    assert directory_fingerprint(root) == "5de5fa0a376621a3a20e"
    assert file_sha256(root / "a.bin") == "7d471e4af16db5a30ce10aebbc29f5178b2edbad6c7dc2e8ff8ee6e4848a726f"
    assert file_digest(root / "a.bin") == file_sha256(root / "a.bin")  # what markers record of each output


def test_digits_truncate_the_full_digest() -> None:
    assert fingerprint([1, "a"], digits=16) == fingerprint([1, "a"])[:16]
    assert len(fingerprint({"a": 1})) == 64
