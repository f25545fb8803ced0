"""Test helper: a tiny PEFT LoRA adapter of the packaged gemma-3-270m, built offline in a directory.

Rank 4 on ``q_proj`` and ``v_proj``, with LoRA's B weights random rather than zero (``init_lora_weights=False``),
so that the adapter changes what the model samples. Built from a seed: the same seed gives the same files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

#: The model the adapter is trained on (as a checkpoint names it).
ADAPTER_BASE = "quickstart:gemma-3-270m"


def build_lora_adapter(out: Path, seed: int = 0) -> Path:
    """Save a rank-4 LoRA adapter of :data:`ADAPTER_BASE` with random A and B weights (``seed``) in ``out``; the
    same seed writes the same files."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from divtrace.generate.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(ADAPTER_BASE).load_path, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    get_peft_model(base, config).save_pretrained(out)
    # peft writes target_modules from a set, in an order that changes with the process's hash seed: sorted, the
    # files (and so the adapter's digest, and the vLLM tests' merged copy in the cache) are the same every session.
    saved = out / "adapter_config.json"
    settings = json.loads(saved.read_text(encoding="utf-8"))
    settings["target_modules"] = sorted(settings["target_modules"])
    saved.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
    return out


def changed_adapter(adapter: Path, out: Path) -> Path:
    """A copy of ``adapter`` in ``out`` whose weights file differs in one tensor (its first, doubled)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, out)
    weights = out / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] * 2
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return out
