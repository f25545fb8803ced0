"""LoRA adapters applied with peft: merged into a loaded model (the transformers backend), or into a cached
safetensors copy of base + adapter (vLLM's ``adapter_mode: merged``).

The adapter references themselves (``quickstart:NAME`` or a directory, their identity) are
:mod:`divtrace.generate.models`'; this module imports peft, torch and transformers only when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from divtrace.cache import cache_dir
from divtrace.errors import ModelLoadError
from divtrace.fingerprint import fingerprint
from divtrace.generate.models import ResolvedAdapter, ResolvedModel, cached_model_dir, tokenizer_source

#: What a merged copy records of itself (next to its weights): its base's identity, the adapter's, peft's version.
MERGE_RECORD = "divtrace-merge.json"


def peft_version() -> str:
    """The installed peft's version (recorded with every sample drawn with a merged adapter)."""
    import peft

    return str(peft.__version__)


def merge_adapter(model: Any, adapter: ResolvedAdapter) -> Any:
    """``model`` (a loaded transformers model, on the device it will run on) with ``adapter`` applied by
    ``PeftModel.from_pretrained`` and merged into its weights (``merge_and_unload``): a plain transformers model
    again, as fast as its base. Raises ModelLoadError naming the adapter when peft cannot apply it (another base's
    shapes, modules the base lacks)."""
    import warnings

    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            # peft 0.21 asks transformers 5 ``is_gradient_checkpointing``, which warns it is deprecated: a message
            # about the two libraries, nothing the user can act on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(model, str(adapter.path)).merge_and_unload()
    except Exception as err:
        raise ModelLoadError(
            f"cannot apply adapter {adapter.ref!r} with peft ({type(err).__name__}: {err}); is it an adapter of this "
            "checkpoint's model?"
        ) from err


def merged_model_dir(base: ResolvedModel, adapter: ResolvedAdapter) -> tuple[Path, dict[str, Any]]:
    """A safetensors directory of ``base`` with ``adapter`` merged into its weights, under divtrace's cache, made
    on first use; and what it records (:data:`MERGE_RECORD`: ``base``, the base's identity with its hub commit
    when it has one, ``adapter`` and ``peft_version``).

    The directory is keyed by the base's identity (as resolved, before loading), the adapter's content digest and
    peft's version, so another adapter or a changed adapter file makes another copy. The base loads in its stored
    dtype (``dtype="auto"``); the tokenizer saved with it is the adapter's when the adapter ships one, else the
    base's. A hub base named by a branch is merged once per branch name: pin a commit to merge it again when the
    hub moves; the commit merged is recorded. Written atomically (:func:`~divtrace.generate.models.cached_model_dir`).
    Raises ModelLoadError when the base cannot be loaded or the adapter applied.
    """
    version = peft_version()
    key = fingerprint({"base": base.identity, "adapter": adapter.identity, "peft": version}, digits=16)
    stem = Path(base.load_path.rstrip("/")).name or "model"
    target = cache_dir() / "merged" / f"{stem}+adapter-{key}"

    def build(staging: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer_path, tokenizer_revision = tokenizer_source(base, adapter)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, revision=tokenizer_revision)
        model = AutoModelForCausalLM.from_pretrained(base.load_path, revision=base.revision, dtype="auto")
        commit = getattr(model.config, "_commit_hash", None)
        merged = merge_adapter(model, adapter)
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        identity = {**base.identity, **({"commit": commit} if commit and not base.is_local else {})}
        record = {"base": identity, "adapter": adapter.identity, "peft_version": version}
        (staging / MERGE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")

    made = cached_model_dir(target, build, f"merge adapter {adapter.ref!r} into {base.ref!r}")
    try:
        record: dict[str, Any] = json.loads((made / MERGE_RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{made}: a merged model without a readable {MERGE_RECORD}; delete it: {err}") from err
    return made, record
