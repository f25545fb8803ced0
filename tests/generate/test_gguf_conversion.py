"""Converting a packaged GGUF file: transformers' three loads (config, weights, tokenizer) share one parse."""

from __future__ import annotations

import gguf
import pytest

from divtrace.generate.models import QUICKSTART_MODELS, gguf_parsed_once


def test_every_reader_of_one_file_is_one_parse_inside_the_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    path = QUICKSTART_MODELS["smollm2-135m-instruct"].located("test")
    original = gguf.GGUFReader
    parsed: list[str] = []

    class CountingReader(original):  # type: ignore[misc,valid-type]
        def __init__(self, path: object, mode: str = "r") -> None:
            parsed.append(str(path))
            super().__init__(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    with gguf_parsed_once():
        first = gguf.GGUFReader(path)
        again = gguf.GGUFReader(str(path))  # the same file named as a string
        assert again is first and len(parsed) == 1
        assert first.fields["general.architecture"].contents() == "llama"  # a real parse, readable
    assert gguf.GGUFReader is CountingReader  # put back as it was
    assert gguf.GGUFReader(path) is not first and len(parsed) == 2  # outside the block: a new parse each time


def test_the_reader_is_put_back_when_the_block_fails() -> None:
    original = gguf.GGUFReader
    with pytest.raises(RuntimeError, match="conversion failed"), gguf_parsed_once():
        assert gguf.GGUFReader is not original
        raise RuntimeError("conversion failed")
    assert gguf.GGUFReader is original
