"""A persistent, content-addressed store of sentence embeddings, safe for concurrent writers.

Keyed by (model key, hash of the text). Written by hand on SQLite (standard library) because no maintained
library offers batched get/put of many small vectors under concurrent processes: SQLite in WAL mode gives
atomic transactions, many readers beside one writer, and waiting writers (busy timeout) instead of corruption.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_key TEXT NOT NULL,
    text_hash BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, text_hash)
) WITHOUT ROWID
"""
_QUERY_CHUNK = 500  # stays under SQLite's bound-parameter limit


def text_hash(text: str) -> bytes:
    """The 16-byte content address of a text (BLAKE2b of its UTF-8 bytes)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EmbeddingCache:
    """Embeddings on disk in one SQLite file; float32 vectors, any number of processes at once."""

    def __init__(self, path: str | Path, timeout_s: float = 120.0) -> None:
        """Open (creating if needed) the cache file at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def get_many(self, model_key: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``hashes`` for ``model_key``; absent hashes are simply missing."""
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(hashes), _QUERY_CHUNK):
            chunk = list(hashes[start : start + _QUERY_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT text_hash, vector FROM embeddings WHERE model_key = ? AND text_hash IN ({marks})",
                [model_key, *chunk],
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, model_key: str, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors in one transaction; a key another writer stored first is kept as it is."""
        rows = [(model_key, key, np.ascontiguousarray(vec, dtype=np.float32).tobytes()) for key, vec in items]
        if not rows:
            return
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)", rows)

    def count(self, model_key: str | None = None) -> int:
        """Number of stored vectors, for one model key or in all."""
        if model_key is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        row = self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE model_key = ?", (model_key,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
