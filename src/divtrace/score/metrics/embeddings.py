"""Sentence (and code) embeddings for the semantic metrics: one encoder per process, each unique text encoded once
ever.

``EmbeddingStore.embed`` deduplicates its input, serves what it has already seen from memory, then from the
persistent :class:`EmbeddingCache`, and encodes only the rest, longest texts batched together, one encoder batch
(``EmbedderSettings.batch_size`` texts) at a time so progress moves per batch; new vectors reach the disk cache
every :data:`CACHE_FLUSH_TEXTS` texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from divtrace.cache import cache_dir
from divtrace.errors import ModelLoadError
from divtrace.progress import TEXTS, ProgressSink, emit
from divtrace.score.content_key import content_key, resolve_model_location
from divtrace.score.metrics.embedding_cache import EmbeddingCache, text_hash
from divtrace.score.settings import EmbedderSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


_LOADED: dict[tuple[str, str | None], SentenceTransformer] = {}
#: New vectors are written to the disk cache in transactions of this many texts (and at the end).
CACHE_FLUSH_TEXTS = 512


def load_sentence_transformer(settings: EmbedderSettings) -> SentenceTransformer:
    """The sentence-transformers model of ``settings``, loaded once per process.

    Raises ModelLoadError naming the model when it cannot be loaded (not found, offline, not a model).
    """
    key = (settings.fingerprint(), settings.device)
    if key not in _LOADED:
        from sentence_transformers import SentenceTransformer

        location = resolve_model_location(settings.model)
        try:
            model = SentenceTransformer(location, revision=settings.revision, device=settings.device)
        except Exception as err:  # sentence-transformers raises OSError, ValueError, HF errors...
            raise ModelLoadError(
                f"cannot load embedder {settings.model!r} ({type(err).__name__}: {err}). Pass --embedder with a "
                "sentence-transformers model id (needs the Hugging Face hub) or a local model directory."
            ) from err
        if settings.pooling is not None:
            model = with_pooling(model, settings.pooling, settings.device)
        if settings.max_seq_length is not None:
            model.max_seq_length = settings.max_seq_length
        _LOADED[key] = model
    return _LOADED[key]


def with_pooling(model: SentenceTransformer, mode: str, device: str | None = None) -> SentenceTransformer:
    """``model``'s first module (the transformer) followed by exactly one pooling layer of ``mode``.

    Whatever came after the transformer (the directory's own pooling, dense or normalisation layers) is dropped,
    so a plain encoder directory and a sentence-transformers directory of the same weights embed alike.
    """
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # 3.x - 5.x
        from sentence_transformers.models import Pooling

    transformer = model[0]
    dimension_of = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    return SentenceTransformer(modules=[transformer, Pooling(dimension_of(), mode)], device=device)


def model_key(settings: EmbedderSettings) -> str:
    """Cache identity of an embedder: its content key (:func:`divtrace.score.content_key.content_key`)."""
    return content_key(settings)


@dataclass
class EmbeddingStats:
    """What one store did: texts asked for, unique among them, served from memory / disk, encoded."""

    requested: int = 0
    unique: int = 0
    from_memory: int = 0
    from_disk: int = 0
    encoded: int = 0


class EmbeddingStore:
    """L2-normalised float32 sentence embeddings with in-memory and on-disk caching.

    Args:
        settings: which embedder and how.
        cache: the persistent cache; ``None`` uses ``<cache_dir>/embeddings.sqlite3``; pass ``False`` for none.
    """

    def __init__(self, settings: EmbedderSettings | None = None, cache: EmbeddingCache | bool | None = None):
        self.settings = settings or EmbedderSettings()
        if cache is None or cache is True:
            cache = EmbeddingCache(cache_dir() / "embeddings.sqlite3")
        self.cache: EmbeddingCache | None = cache or None
        self.model_key = model_key(self.settings)
        self.stats = EmbeddingStats()
        self._memory: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str], progress: ProgressSink | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (rows in input order; shape (len(texts), dim)), computing only what is new.

        ``progress`` gets :class:`~divtrace.progress.ProgressEvent` values counting texts (``texts``, ``done`` of
        the texts to encode): 0 before the encoder runs, then after every encoder batch; none when nothing needs
        encoding (everything came from memory or the disk cache).
        """
        self.stats.requested += len(texts)
        unique = list(dict.fromkeys(texts))
        self.stats.unique += len(unique)
        missing = [t for t in unique if t not in self._memory]
        self.stats.from_memory += len(unique) - len(missing)
        if missing:
            self._fill(missing, progress)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memory[t] for t in texts])

    def _fill(self, texts: list[str], progress: ProgressSink | None) -> None:
        hashes = [text_hash(t) for t in texts]
        on_disk = self.cache.get_many(self.model_key, hashes) if self.cache else {}
        self.stats.from_disk += len(on_disk)
        to_encode = []
        for text, key in zip(texts, hashes, strict=True):
            vector = on_disk.get(key)
            if vector is None:
                to_encode.append((text, key))
            else:
                self._memory[text] = vector
        if to_encode:
            self._encode(to_encode, progress)

    def _encode(self, items: list[tuple[str, bytes]], progress: ProgressSink | None) -> None:
        model = load_sentence_transformer(self.settings)
        items.sort(key=lambda item: len(item[0]), reverse=True)  # similar lengths share a batch: less padding
        emit(progress, 0, len(items), TEXTS)
        size = self.settings.batch_size
        unsaved: list[tuple[bytes, np.ndarray]] = []
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            vectors = model.encode(
                [text for text, _ in batch],
                batch_size=size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
            for (text, key), vector in zip(batch, vectors, strict=True):
                self._memory[text] = vector
                unsaved.append((key, vector))
            self.stats.encoded += len(batch)
            if len(unsaved) >= CACHE_FLUSH_TEXTS:
                unsaved = self._save(unsaved)
            emit(progress, start + len(batch), len(items), TEXTS)
        self._save(unsaved)

    def _save(self, vectors: list[tuple[bytes, np.ndarray]]) -> list[tuple[bytes, np.ndarray]]:
        """Write ``(text hash, vector)`` pairs to the disk cache (if any) in one transaction; an empty list."""
        if self.cache and vectors:
            self.cache.put_many(self.model_key, vectors)
        return []
