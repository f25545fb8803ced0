"""Texts an embedder cannot tell apart: different strings with the same embedding.

all-MiniLM-L6-v2 reads every emoji as its unknown token, so four different emoji-only outputs embed identically and
score an SBERT diversity of 0 and a Vendi score of 1, as if they were one output. The scorer counts such texts
(:func:`indistinguishable_positions`) so the numbers come with a warning instead of silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Two embeddings whose cosine distance is at most this are the same embedding (unit vectors of identical token
#: ids differ by float noise only, ~1e-7; different texts the model reads differently are orders of magnitude apart).
SAME_EMBEDDING_DISTANCE = 1e-6
#: Examples kept in the scorer's settings, and characters kept of each example text.
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 80


def indistinguishable_positions(
    texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray], tolerance: float = SAME_EMBEDDING_DISTANCE
) -> list[int]:
    """Positions in ``texts`` of the texts whose embedding equals that of a *different* text of ``texts``.

    ``embed`` gives L2-normalised rows; two embeddings are equal when their cosine distance is at most
    ``tolerance``. Repeats of one string are not counted (they are the same text): ``["🎉", "🚀", "a", "a"]`` gives
    ``[0, 1]`` with all-MiniLM-L6-v2.
    """
    unique = list(dict.fromkeys(texts))
    if len(unique) < 2:
        return []
    rows = embed(unique).astype(np.float64)
    same = (1.0 - rows @ rows.T) <= tolerance
    np.fill_diagonal(same, False)
    confused = {unique[i] for i in np.flatnonzero(same.any(axis=1))}
    return [position for position, text in enumerate(texts) if text in confused]


@dataclass
class IndistinguishableTally:
    """Indistinguishable texts found per prompt: the total count and a few examples, as recorded in the settings."""

    count: int = 0
    prompts: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, checkpoint: str, task: str, prompt_id: str, texts: Sequence[str]) -> None:
        """Count the indistinguishable ``texts`` of one prompt (none: nothing to add)."""
        if not texts:
            return
        self.count += len(texts)
        self.prompts += 1
        if len(self.examples) < MAX_EXAMPLES:
            shown = [text[:EXAMPLE_CHARS] for text in dict.fromkeys(texts)][:3]
            self.examples.append({"checkpoint": checkpoint, "task": task, "prompt_id": prompt_id, "texts": shown})

    def settings(self, embedder: str | None) -> dict[str, Any]:
        """``{"count", "prompts", "examples", "embedder"}`` for ``settings["indistinguishable_texts"]``."""
        return {"count": self.count, "prompts": self.prompts, "examples": self.examples, "embedder": embedder}
