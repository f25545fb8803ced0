"""vLLM throughput: ``divtrace`` (vLLM backend, end to end to Parquet shards) vs a bare ``LLM.generate`` with n=K.

Both sides use the same engine (loaded once; its start time is reported apart), the same rendered prompts,
temperature / top-p and exactly ``--max-new-tokens`` tokens per sample (``ignore_eos`` on the bare side;
divtrace's side runs to the cap unless a sample ends first, and the tokens it really generated are counted):

- baseline: one ``LLM.generate`` call, one request per prompt with ``n=K`` and one seed (vLLM's parallel
  sampling);
- divtrace: :func:`divtrace.generate.runner.generate_samples` with one request per sample (``n=1``, its own seed,
  so each sample can be drawn again from its record), prompt rendering, sample keys, records and atomic Parquet
  shards, into a fresh directory each round.

Rounds alternate and the median of each side is compared, as tokens/s and as the ratio of times per token.

Run (in an environment with vLLM): ``python benchmarks/bench_vllm.py [--model quickstart:smollm2-135m-instruct
--prompts 8 --k 8 --max-new-tokens 32 --rounds 3 --kv-cache-gib 2 --out FILE]``. Writes
``benchmarks/results/vllm.json``; on a GPU it holds ``tokens_per_s`` (the cost model's rate, per replica), on CPU
``cpu_tokens_per_s`` only, so a CPU figure is never taken for a GPU one.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench_generate import PROMPTS  # the same prompts as the transformers benchmark (this script's folder)
from divtrace.generate.backends.options import VLLMOptions
from divtrace.generate.backends.vllm_backend import VLLMGenerator
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.runner import generate_samples
from divtrace.generate.thinking import ThinkingMode
from divtrace.samples import read_samples


def bare_round(generator: VLLMGenerator, items: list[PromptItem], params: SamplingParams) -> tuple[float, int]:
    """One baseline round: seconds and generated tokens of ``LLM.generate`` with n=K per prompt."""
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.inputs import TokensPrompt

    prompts = []
    for item in items:  # rendered and tokenised as the backend does it
        rendered, _ = generator.render(item.prompt, chat_template=None, thinking=ThinkingMode.native)
        prompts.append(TokensPrompt(prompt_token_ids=generator.prompt_ids(rendered)))
    sampling = VLLMSamplingParams(
        n=params.k,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_new_tokens,
        ignore_eos=True,
        seed=params.seed,
    )
    start = time.perf_counter()
    outputs = generator.engine.generate(prompts, sampling, use_tqdm=False)
    seconds = time.perf_counter() - start
    return seconds, sum(len(choice.token_ids) for output in outputs for choice in output.outputs)


def divtrace_round(generator: VLLMGenerator, items: list[PromptItem], params: SamplingParams) -> tuple[float, int]:
    """One divtrace round: seconds and generated tokens of ``generate_samples`` into a fresh directory."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        generate_samples(generator, GenerationJob.of(items, params, out, "bench", "bench", shard_size=8))
        seconds = time.perf_counter() - start
        tokens = sum(sum(r.output_tokens or []) for r in read_samples(Path(out) / "samples").records)
    return seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="quickstart:smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kv-cache-gib", type=float, default=None)
    parser.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True, help="enforce_eager")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "vllm.json")
    args = parser.parse_args()

    items = [PromptItem(f"p{i}", PROMPTS[i % len(PROMPTS)]) for i in range(args.prompts)]
    params = SamplingParams(k=args.k, temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=1)
    start = time.perf_counter()
    generator = VLLMGenerator(args.model, VLLMOptions(enforce_eager=args.eager, kv_cache_gib=args.kv_cache_gib))
    engine_start_s = time.perf_counter() - start
    bare_round(generator, items[:1], params)  # warm-up (first-request costs) on both paths
    divtrace_round(generator, items[:1], params)
    bare: list[tuple[float, int]] = []
    ours: list[tuple[float, int]] = []
    for _ in range(args.rounds):
        bare.append(bare_round(generator, items, params))
        ours.append(divtrace_round(generator, items, params))
    device = generator.platform
    generator.close()

    bare_rate = statistics.median(tokens / seconds for seconds, tokens in bare)
    our_rate = statistics.median(tokens / seconds for seconds, tokens in ours)
    result = {
        "model": args.model,
        "device": device,
        "machine": platform.machine(),
        "input": {"prompts": args.prompts, "k": args.k, "max_new_tokens": args.max_new_tokens, "rounds": args.rounds},
        "enforce_eager": args.eager,
        "engine_start_s": round(engine_start_s, 1),
        "bare_tokens_per_s": round(bare_rate, 1),
        "divtrace_tokens_per_s": round(our_rate, 1),
        "ratio_time_per_token_divtrace_to_bare": round(bare_rate / our_rate, 3),
        "rounds_bare": bare,
        "rounds_divtrace": ours,
    }
    result["tokens_per_s" if device == "cuda" else "cpu_tokens_per_s"] = round(our_rate, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("rounds_")}, indent=2))


if __name__ == "__main__":
    main()
