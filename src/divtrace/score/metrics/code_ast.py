"""AST subtree diversity of programs: the study's ``ast`` (pairwise) and ``ast-distinct`` (pooled) code scores.

The rules follow the reference (``scripts/compute_code_diversity.py`` of ckarouzos/where-diversity-collapses,
``_subtree_height``, ``_extract_subtrees``, ``compute_ast_metrics``):

* The program of an output is its code (:func:`extracted_code`: the longest Python Markdown block, else the output as
  it is; divtrace's verifier extraction, where the reference has its own regex), with surrounding whitespace stripped
  (the reference strips every output), parsed by :func:`ast.parse`.
* A node's children are the nodes :func:`ast.iter_child_nodes` yields: every AST node in a field, so expression
  contexts (``Load()``, ``Store()``), operators (``Add()``), ``arguments``, ``arg``, ``keyword``, ``alias``... count;
  identifiers, constants' values and other plain fields do not. A node without children has height 1, any other
  node 1 + the largest height of its children.
* Walking down from the module node: a node of height exactly 4 is taken (its ``ast.dump(node)`` with the default
  options) and not descended into; a higher node is descended into; a lower node is left. A program taller than
  :data:`MAX_TREE_HEIGHT` gives no subtrees (the reference's recursion guard).
* A program that does not parse is left out; one that parses but has no subtree (``pass``, ``return x``) counts as
  parsed but takes part in neither score.

One deliberate difference, off with ``dedent_bodies=False``: a program whose stripped text does not parse is parsed
once more dedented (:func:`textwrap.dedent` of the unstripped code). This rescues a body continuation
(``"    a = x * 2\\n    return a\\n"``, a base model's HumanEval completion), which the reference's strip breaks (the
first line loses its indentation, the second keeps it: IndentationError); code whose stripped text parses is
parsed exactly as the reference parses it. The same strip bug made the reference's verifier fail such
continuations, so they never reached its code scores; divtrace's verifier passes them (``docs/fidelity.md``,
"Chain of thought").
"""

from __future__ import annotations

import ast
import hashlib
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from divtrace.score.metrics._base import STUDY_SOURCE, Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric

#: The height of the subtrees compared (the study's 4; a leaf has height 1).
SUBTREE_HEIGHT = 4
#: Programs whose module node is taller than this give no subtrees: the reference's ``_subtree_height`` returns -1
#: once it recurses below depth 500, and ``_extract_subtrees`` then returns nothing for the whole program. (Under
#: Python 3.11 its recursion, two frames a level, already hits RecursionError from height about 497 on, which it
#: also turns into no subtrees; such programs do not occur in practice.)
MAX_TREE_HEIGHT = 501


def extracted_code(text: str) -> str:
    """The code of one output: :func:`divtrace.verify.code.extract_code` without an entry point (the
    longest Python Markdown block, stripped, else the output as it is)."""
    from divtrace.verify.code import extract_code  # lazy: the verifiers import much more than metrics need

    return extract_code(text)


def _try_parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except Exception:  # SyntaxError; ValueError, RecursionError, MemoryError on pathological input
        return None


def parse_program(code: str, dedent_bodies: bool = True) -> ast.Module | None:
    """The module of ``code`` stripped of surrounding whitespace; None when it does not parse.

    With ``dedent_bodies``, code whose stripped text does not parse is tried once more as
    ``textwrap.dedent(code)`` (a function body continuation parses as a module of its statements).
    """
    tree = _try_parse(code.strip())
    if tree is None and dedent_bodies:
        dedented = textwrap.dedent(code)
        if dedented != code:
            tree = _try_parse(dedented)
    return tree


def node_heights(tree: ast.AST) -> dict[int, int]:
    """Height of every node under ``tree`` (itself included), keyed by ``id(node)``; a leaf has height 1.

    Iterative, so any depth :func:`ast.parse` accepts is fine. Valid while ``tree`` is alive.
    """
    heights: dict[int, int] = {}
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            heights[id(node)] = 1 + max((heights[id(child)] for child in ast.iter_child_nodes(node)), default=0)
        elif id(node) not in heights:  # Load(), Add()... are shared leaves: computed once is enough
            stack.append((node, True))
            stack.extend((child, False) for child in ast.iter_child_nodes(node))
    return heights


def subtree_dumps(tree: ast.AST, height: int = SUBTREE_HEIGHT) -> list[str]:
    """``ast.dump`` of every subtree of exactly ``height`` under ``tree``, in pre-order.

    A node of that height is taken and not descended into, a taller one is descended into, a lower one is left.
    Nothing when ``tree`` is taller than :data:`MAX_TREE_HEIGHT`.
    """
    heights = node_heights(tree)
    if heights[id(tree)] > MAX_TREE_HEIGHT:
        return []
    dumps: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        node_height = heights[id(node)]
        if node_height == height:
            dumps.append(ast.dump(node))
        elif node_height > height:
            stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return dumps


def program_subtrees(text: str, height: int = SUBTREE_HEIGHT, dedent_bodies: bool = True) -> Counter[str] | None:
    """The multiset of height-``height`` subtrees (``ast.dump`` strings) of an output's program; None when the
    program does not parse. The output goes through :func:`extracted_code` first."""
    tree = parse_program(extracted_code(text), dedent_bodies)
    return None if tree is None else Counter(subtree_dumps(tree, height))


@dataclass(frozen=True)
class SubtreeMultiset:
    """A compact multiset of subtrees: 64-bit BLAKE2b digests of their dumps (sorted, unique) and their counts.

    Two different subtrees share a digest with probability about 2^-64 per pair: negligible within a group.
    """

    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_dumps(cls, dumps: Iterable[str]) -> SubtreeMultiset:
        """The multiset of ``dumps``."""
        digests = [
            int.from_bytes(hashlib.blake2b(dump.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for dump in dumps
        ]
        keys, counts = np.unique(np.array(digests, dtype=np.uint64), return_counts=True)
        return cls(keys, counts.astype(np.int64))

    @property
    def total(self) -> int:
        """Number of subtrees, repeats included."""
        return int(self.counts.sum())


def multiset_jaccard_distance(a: SubtreeMultiset, b: SubtreeMultiset) -> float:
    """1 - sum of min(counts) / sum of max(counts) over the union of two non-empty multisets."""
    _, in_a, in_b = np.intersect1d(a.keys, b.keys, assume_unique=True, return_indices=True)
    shared = int(np.minimum(a.counts[in_a], b.counts[in_b]).sum())
    return 1.0 - shared / (a.total + b.total - shared)  # sum of max = sum a + sum b - sum of min


def mean_pairwise_distance(multisets: Sequence[SubtreeMultiset]) -> float:
    """Mean :func:`multiset_jaccard_distance` over the n(n-1)/2 pairs; NaN with fewer than 2 multisets."""
    n = len(multisets)
    if n < 2:
        return float("nan")
    distances = [multiset_jaccard_distance(multisets[i], multisets[j]) for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(distances))


def pooled_distinct_ratio(multisets: Sequence[SubtreeMultiset]) -> float:
    """Distinct subtrees / all subtrees of the pooled multisets; NaN when there are none."""
    total = sum(m.total for m in multisets)
    if total == 0:
        return float("nan")
    return np.unique(np.concatenate([m.keys for m in multisets])).size / total


class _ASTMetric(Metric):
    """Shared parsing of the AST metrics: one parse per distinct text per call, and ``parse_rate`` diagnostics.

    Args:
        subtree_height: the height of the compared subtrees (the study's 4).
        dedent_bodies: parse a program that fails stripped once more dedented (see the module docstring); False
            is the reference exactly.
    """

    code_only = True
    value_range = ValueRange(0.0, 1.0)  # a Jaccard distance; a distinct / all ratio

    def __init__(self, subtree_height: int = SUBTREE_HEIGHT, dedent_bodies: bool = True) -> None:
        if subtree_height < 1:
            raise ValueError("subtree_height must be at least 1")
        self.subtree_height = subtree_height
        self.dedent_bodies = dedent_bodies
        #: text -> whether its program parsed, from the last scoring call (for :meth:`group_diagnostics`).
        self._parsed: dict[str, bool] = {}

    def settings(self) -> dict[str, Any]:
        return {
            "subtree_height": self.subtree_height,
            "max_tree_height": MAX_TREE_HEIGHT,
            "dedent_bodies": self.dedent_bodies,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",  # the ast grammar's version
        }

    def _multiset(self, text: str) -> SubtreeMultiset | None:
        tree = parse_program(extracted_code(text), self.dedent_bodies)
        if tree is None:
            return None
        return SubtreeMultiset.from_dumps(subtree_dumps(tree, self.subtree_height))

    def _group_multisets(self, groups: Sequence[Sequence[str]]) -> list[list[SubtreeMultiset]]:
        """Per group, the non-empty subtree multisets of its parseable programs, in order."""
        memo: dict[str, SubtreeMultiset | None] = {}
        result = []
        for group in groups:
            multisets = []
            for text in group:
                if text not in memo:
                    memo[text] = self._multiset(text)
                multiset = memo[text]
                if multiset is not None and multiset.total > 0:
                    multisets.append(multiset)
            result.append(multisets)
        self._parsed = {text: multiset is not None for text, multiset in memo.items()}
        return result

    def group_diagnostics(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> dict[str, np.ndarray]:
        """``parse_rate``: the fraction of each group's programs that parse (NaN for an empty group)."""
        rates = np.full(len(groups), np.nan, dtype=np.float64)
        for index, group in enumerate(groups):
            if group:
                parsed = [self._parses(text) for text in group]
                rates[index] = sum(parsed) / len(parsed)
        return {"parse_rate": rates}

    def _parses(self, text: str) -> bool:
        if text not in self._parsed:
            self._parsed[text] = parse_program(extracted_code(text), self.dedent_bodies) is not None
        return self._parsed[text]


@register_metric
class ASTPairwise(_ASTMetric):
    """Mean pairwise multiset-Jaccard distance between the height-4 AST subtrees of a group's programs.

    NaN for a group with fewer than 2 parseable programs that have a subtree.
    """

    name = "ast"
    source = STUDY_SOURCE
    description = "mean pairwise Jaccard distance of height-4 AST subtree multisets (code, parseable programs)"

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        return np.array([mean_pairwise_distance(m) for m in self._group_multisets(groups)], dtype=np.float64)


@register_metric
class ASTDistinct(_ASTMetric):
    """Distinct / all height-4 AST subtrees, pooled over a group's parseable programs.

    NaN for a group without a parseable program that has a subtree.
    """

    name = "ast-distinct"
    source = STUDY_SOURCE
    description = "distinct / all height-4 AST subtrees pooled over the programs (code, parseable programs)"

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        return np.array([pooled_distinct_ratio(m) for m in self._group_multisets(groups)], dtype=np.float64)
