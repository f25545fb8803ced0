"""Homogenisation's n-gram similarity: one sparse product per prompt against a Python set intersection per pair.

Input: ``--prompts`` prompts, each with ``--checkpoints`` checkpoints x K = ``--k`` outputs of about ``--words``
words (deterministic, Zipf-distributed words), as a study's homogenisation stage sees them. Both sides compute
the ``ngram`` similarity of every unordered pair of checkpoints (each with itself) on every prompt:

- baseline: the definition, pair by pair (:func:`divtrace.score.homogenization.ngram_similarity`: a Python set
  intersection and union per pair of outputs);
- divtrace: :func:`divtrace.score.homogenization.prompt_similarities` (its n-gram part: one incidence matrix per
  prompt, every intersection from one sparse product), with a constant embedding so the SBERT part costs nothing.

The two must agree exactly. Run: ``python benchmarks/bench_homogenization.py [--prompts 4 --checkpoints 16 --k 16
--words 300]``; prints a table and writes ``benchmarks/results/homogenization.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from divtrace.samples import SampleRecord
from divtrace.score.homogenization import ngram_similarity, prompt_similarities


def make_outputs(prompts: int, checkpoints: int, k: int, words: int, seed: int) -> list[dict[str, list[str]]]:
    """Per prompt, ``{checkpoint: k outputs}`` of about ``words`` words from a Zipf-like vocabulary."""
    rng = random.Random(seed)
    vocabulary = [f"word{i}" for i in range(5000)]
    weights = [1.0 / (rank + 10) for rank in range(len(vocabulary))]
    return [
        {f"c{c}": [" ".join(rng.choices(vocabulary, weights, k=words)) for _ in range(k)] for c in range(checkpoints)}
        for _ in range(prompts)
    ]


def by_pairs(prompts: Sequence[dict[str, list[str]]]) -> list[float]:
    """The baseline: every pair's n-gram similarity by the definition, pair after pair."""
    values = []
    for outputs in prompts:
        names = list(outputs)
        for first, second in [(a, a) for a in names] + list(combinations(names, 2)):
            values.append(ngram_similarity(outputs[first], None if first == second else outputs[second]))
    return values


def by_matrix(prompts: Sequence[dict[str, list[str]]]) -> list[float]:
    """divtrace's path: prompt_similarities' n-gram values, in the baseline's order."""
    records: dict[str, list[SampleRecord]] = {}
    for p, outputs in enumerate(prompts):
        for name, texts in outputs.items():
            records.setdefault(name, []).append(SampleRecord(prompt_id=f"p{p}", prompt="", outputs=texts, task="t"))
    table = prompt_similarities(records, lambda texts: np.ones((len(texts), 4)))
    ngram = table[table["metric"] == "ngram"]
    keyed = {(row.prompt_id, row.checkpoint_a, row.checkpoint_b): row.similarity for row in ngram.itertuples()}
    names = list(prompts[0])
    pairs = [(a, a) for a in names] + list(combinations(names, 2))
    return [keyed[f"p{p}", a, b] for p in range(len(prompts)) for a, b in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--checkpoints", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prompts = make_outputs(args.prompts, args.checkpoints, args.k, args.words, args.seed)
    start = time.perf_counter()
    expected = by_pairs(prompts)
    baseline_s = time.perf_counter() - start
    start = time.perf_counter()
    found = by_matrix(prompts)
    divtrace_s = time.perf_counter() - start
    if found != expected:
        raise SystemExit("the matrix path differs from the definition")
    output_pairs = args.prompts * (args.checkpoints * args.k) * (args.checkpoints * args.k - 1) // 2
    result = {
        "prompts": args.prompts, "checkpoints": args.checkpoints, "k": args.k, "words": args.words,
        "output_pairs": output_pairs, "baseline_s": baseline_s, "divtrace_s": divtrace_s,
        "speedup": baseline_s / divtrace_s, "identical": True, "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }  # fmt: skip
    print(f"{'path':<28}{'seconds':>10}{'per prompt':>12}")
    print(f"{'pair by pair (definition)':<28}{baseline_s:>10.2f}{baseline_s / args.prompts:>12.2f}")
    print(f"{'one product per prompt':<28}{divtrace_s:>10.2f}{divtrace_s / args.prompts:>12.2f}")
    print(f"speedup {result['speedup']:.1f}x on {output_pairs:,} output pairs; identical values")
    out = Path(__file__).parent / "results" / "homogenization.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
