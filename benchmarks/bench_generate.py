"""Generation overhead: ``divtrace`` (transformers backend, end to end to Parquet shards) vs a bare ``generate``.

Both sides use the same loaded model, the same rendered prompts, the same batches (``--batch-prompts`` prompts x K
rows, left-padded), temperature / top-p, and exactly ``--max-new-tokens`` tokens per sample (end-of-sequence
ignored on both sides, so both do the same amount of work whatever they sample):

- baseline: ``model.generate(do_sample=True, num_return_sequences=K, min_new_tokens=max_new_tokens, ...)``;
- divtrace: :func:`divtrace.generate.runner.generate_samples` with per-sample seeded sampling, prompt rendering,
  sample keys, records and atomic Parquet shards, into a fresh directory each round.

Rounds alternate (baseline, divtrace, baseline, divtrace, ...) and the median of each side is compared.

Run: ``python benchmarks/bench_generate.py [--model quickstart:smollm2-135m-instruct --prompts 8 --k 8
--max-new-tokens 32 --rounds 3 --out FILE]``. Prints a table and writes ``benchmarks/results/generate.json``
(``generate-gemma-3-270m.json`` holds the run with ``--model quickstart:gemma-3-270m --rounds 2``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from divtrace.generate.backends.options import TransformersOptions
from divtrace.generate.backends.transformers_backend import TransformersGenerator
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.runner import generate_samples

PROMPTS = [
    "Write a short story opening about a lighthouse.",
    "Describe the smell of rain.",
    "Give advice to a new programmer.",
    "What is the best way to learn a language?",
    "Invent a name for a new color and describe it.",
    "Write a short poem about the ocean.",
    "What would you do with a free afternoon?",
    "Explain why people enjoy music.",
    "Describe your ideal breakfast.",
    "What makes a good teacher?",
    "Write a limerick about a cat.",
    "Why do leaves change color?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="quickstart:smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-prompts", type=int, default=4, help="prompts per forward batch (x K rows)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generate.json")
    args = parser.parse_args()

    generator = TransformersGenerator(
        args.model, TransformersOptions(batch_size=args.batch_prompts * args.k, ignore_eos=True)
    )
    params = SamplingParams(k=args.k, temperature=0.6, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=1234)
    items = [PromptItem(f"p{i}", PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" ({i})"))
             for i in range(args.prompts)]  # fmt: skip
    rendered = [generator.render(item.prompt)[0] for item in items]
    model, tokenizer = generator.model, generator.tokenizer

    def baseline() -> None:
        torch.manual_seed(0)
        for start in range(0, len(rendered), args.batch_prompts):
            batch = rendered[start : start + args.batch_prompts]
            encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                model.generate(
                    **encoded,
                    do_sample=True,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=None,
                    max_new_tokens=params.max_new_tokens,
                    min_new_tokens=params.max_new_tokens,
                    num_return_sequences=args.k,
                    pad_token_id=tokenizer.pad_token_id,
                )

    def divtrace_run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            generate_samples(generator, GenerationJob.of(items, params, tmp, "bench", "bench", shard_size=8))

    baseline()  # warm-up (first-call allocations), not timed
    times: dict[str, list[float]] = {"baseline": [], "divtrace": []}
    for _ in range(args.rounds):
        for name, fn in (("baseline", baseline), ("divtrace", divtrace_run)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    samples = args.prompts * args.k
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["divtrace"] / median["baseline"]
    result = {
        "model": args.model,
        "device": generator.device,
        "input": {
            "prompts": args.prompts,
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            "rows_per_batch": args.batch_prompts * args.k,
        },
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "baseline_s": [round(t, 3) for t in times["baseline"]],
        "divtrace_s": [round(t, 3) for t in times["divtrace"]],
        "baseline_median_s": round(median["baseline"], 3),
        "divtrace_median_s": round(median["divtrace"], 3),
        "samples_per_s_divtrace": round(samples / median["divtrace"], 2),
        "tokens_per_s_divtrace": round(samples * args.max_new_tokens / median["divtrace"], 1),
        "ratio_divtrace_to_baseline": round(ratio, 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"\ndivtrace generation costs {ratio:.3f} x the bare transformers generate() (target <= 1.05)")


if __name__ == "__main__":
    main()
