"""Word n-gram counting shared by the lexical metrics (EAD, distinct-n).

Tokenisation follows the code that produced the published study's numbers (Karouzos, Tan, Aletras 2026,
``lines_to_ngrams`` of its diversity metrics): delete every "." and "\\n", then split on any run of whitespace
(``str.split()``: spaces, tabs, "\\r", ...). Deleting "\\n" joins the words either side of it ("a\\nb" is one word
"ab"). n-grams never cross the boundary between two outputs; the n-grams of a group's outputs are pooled.

Counting is written by hand (no library counts distinct n-grams per group in bulk): words become integer ids,
an n-gram's id is built from the (n-1)-gram id and the next word by ``np.unique``, so every n is exact and the
whole input is processed in a few vectorised passes instead of millions of Python tuples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: The tokenisation rule, as recorded in the lexical metrics' settings.
WORDS_RULE = "delete '.' and '\\n', then str.split() (any whitespace)"


def words_of(text: str) -> list[str]:
    """The words of ``text`` as the study's EAD sees them: "." and "\\n" deleted, then ``str.split()``."""
    return text.replace(".", "").replace("\n", "").split()


def ngram_counts(groups: Sequence[Sequence[str]], n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct and total word n-gram counts per group, for n = 1..n_max.

    Returns:
        ``(distinct, total)``, two int64 arrays of shape (len(groups), n_max); column n-1 holds the counts of
        n-grams pooled over the outputs of each group.
    """
    all_words: list[str] = []
    segment_lengths: list[int] = []
    segment_group: list[int] = []
    for group_index, group in enumerate(groups):
        for text in group:
            words = words_of(text)
            all_words.extend(words)
            segment_lengths.append(len(words))
            segment_group.append(group_index)

    n_groups = len(groups)
    distinct = np.zeros((n_groups, n_max), dtype=np.int64)
    total = np.zeros((n_groups, n_max), dtype=np.int64)
    if not all_words:
        return distinct, total

    word_ids = pd.factorize(np.asarray(all_words, dtype=object))[0].astype(np.int64)
    lengths = np.asarray(segment_lengths, dtype=np.int64)
    group_of = np.repeat(np.asarray(segment_group, dtype=np.int64), lengths)
    position_in_segment = np.arange(len(word_ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    remaining = np.repeat(lengths, lengths) - position_in_segment  # words from here to the segment's end

    gram_ids = word_ids  # id of the n-gram starting at each position (valid where remaining >= n)
    n_words = int(word_ids.max()) + 1
    for n in range(1, n_max + 1):
        if n > 1:
            # (n-1)-gram id at i, extended by the word at i+n-1; re-densified so ids stay small.
            extended = gram_ids[:-1] * n_words + word_ids[n - 1 :]
            if extended.size == 0:  # fewer words in the whole input than n
                break
            gram_ids = _dense_ids(extended)
        valid = remaining[: len(gram_ids)] >= n
        groups_valid = group_of[: len(gram_ids)][valid]
        total[:, n - 1] = np.bincount(groups_valid, minlength=n_groups)
        stride = int(gram_ids.max()) + 1
        keyed = np.sort(groups_valid * stride + gram_ids[valid])
        first_of_run = np.ones(len(keyed), dtype=bool)  # one True per (group, distinct n-gram)
        first_of_run[1:] = keyed[1:] != keyed[:-1]
        distinct[:, n - 1] = np.bincount(keyed[first_of_run] // stride, minlength=n_groups)
    return distinct, total


def _dense_ids(keys: np.ndarray) -> np.ndarray:
    """Map int64 keys to 0..(distinct-1), equal keys to equal ids (a sort, faster than np.unique here)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new_run = np.ones(len(keys), dtype=np.int64)
    new_run[0] = 0
    new_run[1:] = sorted_keys[1:] != sorted_keys[:-1]
    ids = np.empty(len(keys), dtype=np.int64)
    ids[order] = np.cumsum(new_run)
    return ids
