"""Scoring speed: divtrace's EAD + SBERT + Vendi against the embedding model's bare forward pass.

Input: 500 prompts x 16 outputs of ~100 words (deterministic, Zipf-distributed English words from the embedder's
own vocabulary; a quarter of the prompts are partly collapsed, i.e. repeat some outputs, as post-trained models
do). Both sides run in this process with the model already loaded:

- baseline: ``SentenceTransformer.encode`` over the unique texts (same batch size, normalised embeddings);
- divtrace: ``divtrace.score(file, metrics=["ead", "sbert", "vendi"])`` from the JSONL file on disk to the summary
  table, with an empty embedding cache (so every unique text is encoded), then again with the cache warm.

Run: ``python benchmarks/bench_score.py [--prompts 500 --k 16 --words 100]``. Prints a table and writes
``benchmarks/results/score.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import divtrace
from divtrace.samples import SampleRecord, write_samples
from divtrace.score.metrics import ScoringContext, create_metric
from divtrace.score.metrics.embedding_cache import EmbeddingCache
from divtrace.score.metrics.embeddings import EmbeddingStore, load_sentence_transformer, resolve_model_location
from divtrace.score.settings import EmbedderSettings


def english_words() -> list[str]:
    """Whole English words of the MiniLM vocabulary (no word pieces, no symbols), most frequent first."""
    vocab = Path(resolve_model_location(EmbedderSettings().model)) / "vocab.txt"
    return [w for w in vocab.read_text().split("\n") if w.isalpha() and w.isascii() and len(w) > 1]


def make_records(n_prompts: int, k: int, words: int, seed: int) -> list[SampleRecord]:
    """Deterministic prompts with k outputs of about ``words`` words each."""
    rng = random.Random(seed)
    vocab = english_words()
    weights = [1.0 / (rank + 10) for rank in range(len(vocab))]  # Zipf-like

    def sentence() -> str:
        return " ".join(rng.choices(vocab, weights, k=rng.randint(8, 20))).capitalize() + "."

    def output() -> str:
        text = []
        while sum(len(s.split()) for s in text) < words:
            text.append(sentence())
        return " ".join(text)

    records = []
    for p in range(n_prompts):
        outputs = [output() for _ in range(k)]
        if p % 4 == 0:  # partly collapsed prompt: half the outputs repeat earlier ones
            outputs = [outputs[i % (k // 2)] for i in range(k)]
        records.append(SampleRecord(prompt_id=f"p{p}", prompt=f"prompt {p}", outputs=outputs, checkpoint="bench"))
    return records


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "score.json")
    args = parser.parse_args()

    records = make_records(args.prompts, args.k, args.words, args.seed)
    texts = [t for r in records for t in r.outputs]
    unique = list(dict.fromkeys(texts))
    settings = EmbedderSettings()

    with tempfile.TemporaryDirectory() as tmp:
        samples_path = Path(tmp) / "bench.jsonl"
        write_samples(records, samples_path)
        load_s, model = timed(lambda: load_sentence_transformer(settings))
        model.encode(unique[:128], batch_size=settings.batch_size)  # warm-up, both sides benefit

        baseline_s, _ = timed(
            lambda: model.encode(
                unique, batch_size=settings.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        )
        ead_s, _ = timed(lambda: create_metric("ead").score_groups([r.outputs for r in records], ScoringContext()))

        cache_path = Path(tmp) / "cache.sqlite3"

        def run_divtrace() -> divtrace.ScoreResult:
            store = EmbeddingStore(settings, cache=EmbeddingCache(cache_path))
            return divtrace.score(samples_path, metrics=["ead", "sbert", "vendi"], embedder=store)

        cold_s, cold = timed(run_divtrace)
        warm_s, warm = timed(run_divtrace)

    ratio = cold_s / baseline_s
    result = {
        "input": {
            "prompts": args.prompts,
            "k": args.k,
            "words": args.words,
            "texts": len(texts),
            "unique": len(unique),
        },
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "model_load_s": round(load_s, 3),
        "baseline_encode_s": round(baseline_s, 3),
        "divtrace_cold_s": round(cold_s, 3),
        "divtrace_warm_s": round(warm_s, 3),
        "ead_only_s": round(ead_s, 3),
        "ratio_cold_to_baseline": round(ratio, 4),
        "encoded_cold": cold.embedding_stats["encoded"],
        "encoded_warm": warm.embedding_stats["encoded"],
        "texts_per_s_cold": round(len(texts) / cold_s, 1),
        "summary_equal_cold_warm": bool(np.allclose(cold.summary["mean"], warm.summary["mean"], atol=0, rtol=0)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"\nEAD + SBERT + Vendi cost {ratio:.3f} x the bare forward pass (target <= 1.15); EAD alone {ead_s:.2f} s")


if __name__ == "__main__":
    main()
