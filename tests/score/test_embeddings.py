"""The embedding store with the packaged MiniLM: exact vectors, dedupe, a persistent cache, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from divtrace.errors import ModelLoadError
from divtrace.score.metrics import embeddings as embeddings_module
from divtrace.score.metrics.embedding_cache import EmbeddingCache, text_hash
from divtrace.score.metrics.embeddings import EmbeddingStore, load_sentence_transformer
from divtrace.score.settings import EmbedderSettings

TEXTS = [
    "The cat sat on the mat.",
    "A dog barked at the mailman all morning.",
    "The cat sat on the mat.",
    "Quantum computers use qubits.",
    "",
]


def test_vectors_equal_a_direct_sentence_transformers_encode(tmp_path: Path) -> None:
    store = EmbeddingStore(EmbedderSettings(), cache=EmbeddingCache(tmp_path / "cache.sqlite3"))
    got = store.embed(TEXTS)
    model = load_sentence_transformer(EmbedderSettings())
    direct = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(got, direct, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert store.stats.encoded == 4  # the repeated text is encoded once
    assert store.stats.unique == 4


def test_second_run_encodes_nothing_and_loads_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_path = tmp_path / "cache.sqlite3"
    first = EmbeddingStore(EmbedderSettings(), cache=EmbeddingCache(cache_path))
    vectors = first.embed(TEXTS)
    assert first.stats.encoded == 4

    monkeypatch.setattr(embeddings_module, "_LOADED", {})  # a fresh process: no model in memory
    second = EmbeddingStore(EmbedderSettings(), cache=EmbeddingCache(cache_path))
    again = second.embed(TEXTS)
    assert second.stats.encoded == 0
    assert second.stats.from_disk == 4
    assert embeddings_module._LOADED == {}  # never needed the model
    np.testing.assert_array_equal(again, vectors)


def test_settings_that_change_vectors_do_not_share_cache_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    EmbeddingStore(EmbedderSettings(), cache=cache).embed(TEXTS[:2])
    short = EmbeddingStore(EmbedderSettings(max_seq_length=4), cache=cache)
    short.embed(TEXTS[:2])
    assert short.stats.encoded == 2
    assert (
        EmbeddingStore(EmbedderSettings(batch_size=3), cache=cache).model_key
        == EmbeddingStore(EmbedderSettings(), cache=cache).model_key
    )  # batch size changes speed, not vectors


def test_unloadable_embedder_names_the_model(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    missing.mkdir()
    store = EmbeddingStore(EmbedderSettings(model=str(missing)), cache=False)
    with pytest.raises(ModelLoadError, match="no-such-model"):
        store.embed(["x"])


def _writer(path: str, worker: int, rounds: int) -> None:
    cache = EmbeddingCache(path, timeout_s=60)
    rng = np.random.default_rng(worker)
    for _ in range(rounds):
        keys = rng.integers(0, 300, size=40)  # heavy overlap between workers
        cache.put_many("model", [(text_hash(f"text-{k}"), np.full(8, k, dtype=np.float32)) for k in keys])
        cache.get_many("model", [text_hash(f"text-{k}") for k in keys[:10]])


def test_concurrent_writers_leave_a_consistent_cache(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    EmbeddingCache(path)  # create the schema once
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    cache = EmbeddingCache(path)
    stored = cache.get_many("model", [text_hash(f"text-{k}") for k in range(300)])
    assert 250 < len(stored) <= 300
    for k in range(300):
        key = text_hash(f"text-{k}")
        if key in stored:
            np.testing.assert_array_equal(stored[key], np.full(8, k, dtype=np.float32))
    assert cache.count("model") == len(stored)
