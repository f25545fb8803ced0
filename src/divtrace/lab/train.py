"""Training one lab stage: SFT with TRL's ``SFTTrainer``, DPO with its ``DPOTrainer``, LoRA through peft.

What a stage trains from (:class:`ParentWeights`) is its parent's weights: a model (the base, or a full
fine-tuning stage's directory) and, for a LoRA parent, its adapter. Then:

- a LoRA stage whose parent has an adapter loads it trainable and goes on training it (the child is the model
  plus one adapter); a LoRA stage whose parent has none starts a fresh adapter;
- a full fine-tuning stage whose parent has an adapter trains the parent's weights with the adapter merged in;
- DPO's reference is the parent, never the bare base: with the parent's adapter TRL 1.16 copies it as a frozen
  ``ref`` adapter (``DPOTrainer`` given a ``PeftModel`` and no ``ref_model``); with a fresh adapter the reference
  is the model with adapters disabled, the parent's weights; full fine-tuning gets a frozen copy of the parent's
  weights as ``ref_model``. So the first step's loss is log 2 and its rewards 0.

Training is float32 and seeded (``transformers.set_seed`` and the trainer's ``seed``/``data_seed``); it runs on the
device the trainer picks (CUDA when there is one, else the CPU), which the card records. The output directory gets
the adapter (``adapter_config.json``, ``adapter_model.safetensors``) or the full model and its tokenizer.
"""

from __future__ import annotations

import copy
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.generate.rendering import has_chat_template
from divtrace.lab.recipe import LoraSpec, StageSpec
from divtrace.lab.rows import is_conversational
from divtrace.progress import STEPS, ProgressEvent, ProgressSink

#: The packages whose versions a checkpoint's card records and its marker is keyed on.
LIBRARIES = ("divtrace", "torch", "transformers", "trl", "peft", "datasets", "accelerate")

#: How to install what the lab trains with.
LAB_INSTALL = "pip install 'divtrace[lab]'"

#: The keys of a logged step that a loss curve keeps besides ``step`` (those the trainer logged).
_CURVE_KEYS = (
    "loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins",
    "rewards/accuracies", "mean_token_accuracy",
)  # fmt: skip


@dataclass(frozen=True)
class ParentWeights:
    """What a stage trains from: ``load_path`` (a local model directory or a hub id, at ``revision``) and the
    parent's LoRA ``adapter`` directory (None when the parent has none); ``label`` says which checkpoint it is, in
    words (``base``, ``base + sft's adapter``)."""

    load_path: str
    revision: str | None
    adapter: Path | None
    label: str


@dataclass(frozen=True)
class TrainRequest:
    """One stage to train: ``stage`` with the LoRA settings ``lora`` (None: full fine-tuning) from ``parent`` on
    ``rows`` (the training form of :mod:`divtrace.lab.rows`), written to ``out_dir``; ``where`` prefixes errors
    about the data (the recipe file and the stage's key); ``progress`` gets the optimizer steps."""

    stage: StageSpec
    lora: LoraSpec | None
    parent: ParentWeights
    rows: list[dict[str, Any]]
    out_dir: Path
    where: str
    progress: ProgressSink | None = None


@dataclass(frozen=True)
class TrainingRun:
    """What training a stage did: the ``loss_curve`` (one entry per logged optimizer step: ``step``, ``loss`` and
    the other values of :data:`_CURVE_KEYS` that were logged), ``train_seconds`` (the trainer's loop), the
    ``device`` it ran on and, for DPO, what the ``reference`` was, in words."""

    loss_curve: list[dict[str, float]]
    train_seconds: float
    device: str
    reference: str | None = None


#: How a stage is trained (:func:`train_stage`, or a stand-in in tests).
Trainer = Callable[[TrainRequest], TrainingRun]


def library_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`LIBRARIES` (None for one that is not installed)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def require_lab_libraries() -> None:
    """Raise DivtraceError, saying how to install them, when trl or peft is not installed (before any work)."""
    missing = [name for name in ("trl", "peft") if find_spec(name) is None]
    if missing:
        raise DivtraceError(f"the lineage lab trains with trl and peft; {' and '.join(missing)} missing: {LAB_INSTALL}")


def train_stage(request: TrainRequest) -> TrainingRun:
    """Train ``request.stage`` (SFT or DPO; its LoRA adapter or its full weights) from its parent's weights on its
    rows, and write the adapter (LoRA) or the model and its tokenizer (full) to ``request.out_dir``.

    The module documentation says what is trained and what DPO's reference is. Raises DivtraceError (naming
    ``request.where``) when the rows are chat messages and the model has no chat template.
    """
    with warnings.catch_warnings():
        # transformers' deprecation notices that TRL's configs trigger (gradient_checkpointing), not the user's
        warnings.filterwarnings("ignore", category=FutureWarning)
        return _train(request)


def _train(request: TrainRequest) -> TrainingRun:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed

    stage, parent = request.stage, request.parent
    set_seed(stage.seed)
    _say_step(request, "loading model")
    tokenizer = AutoTokenizer.from_pretrained(parent.load_path, revision=parent.revision)
    rows = _chat_rows(request.rows, has_chat_template(tokenizer), request.where, parent.label)
    model = AutoModelForCausalLM.from_pretrained(parent.load_path, revision=parent.revision, dtype=torch.float32)
    peft_config = None
    if parent.adapter is not None and request.lora is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(parent.adapter), is_trainable=True)
    elif parent.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(parent.adapter)).merge_and_unload()
        model.requires_grad_(True)  # peft froze the weights under the adapter: full fine-tuning trains them all
    elif request.lora is not None:
        peft_config = _lora_config(request.lora)
    with tempfile.TemporaryDirectory(prefix=".trainer-", dir=request.out_dir.parent) as scratch:
        trainer, reference = _trainer(request, model, tokenizer, rows, peft_config, Path(scratch))
        trainer.remove_callback(PrinterCallback)  # each step's logs, printed: the card keeps them
        trainer.add_callback(_progress_callback(request))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    _save(trainer.model, tokenizer, request)
    curve = [_curve_point(entry) for entry in trainer.state.log_history if "loss" in entry]
    return TrainingRun(curve, seconds, str(trainer.args.device), reference)


def _trainer(
    request: TrainRequest, model: Any, tokenizer: Any, rows: list[dict[str, Any]], peft_config: Any, scratch: Path
) -> tuple[Any, str | None]:
    """The TRL trainer of the stage, and (DPO) what its reference is, in words."""
    import torch
    from datasets import Dataset

    stage = request.stage
    settings: dict[str, Any] = {
        "output_dir": str(scratch),
        "max_steps": stage.steps,
        "per_device_train_batch_size": stage.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": stage.learning_rate,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "max_length": stage.max_length,
        "seed": stage.seed,
        "data_seed": stage.seed,
        "bf16": False,  # TRL's configs default to bf16; the lab trains in float32
        "fp16": False,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    dataset = Dataset.from_list(rows)
    if stage.method == "sft":
        from trl import SFTConfig, SFTTrainer

        sft = SFTTrainer(
            model=model, args=SFTConfig(**settings), train_dataset=dataset, processing_class=tokenizer,
            peft_config=peft_config,
        )  # fmt: skip
        return sft, None
    from trl import DPOConfig, DPOTrainer

    ref_model = None
    if request.lora is None:  # full fine-tuning: a frozen copy of the parent's weights
        ref_model = copy.deepcopy(model).eval()
        ref_model.requires_grad_(False)
    dpo = DPOTrainer(
        model=model, ref_model=ref_model, args=DPOConfig(beta=stage.dpo_beta, **settings),
        train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
    )  # fmt: skip
    return dpo, f"the parent ({request.parent.label})"


def _lora_config(lora: LoraSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def _save(model: Any, tokenizer: Any, request: TrainRequest) -> None:
    """The trained adapter (only the stage's own: not DPO's ``ref`` copy) or the full model and its tokenizer."""
    out = request.out_dir
    if request.lora is not None:
        model.save_pretrained(str(out), selected_adapters=["default"])
        (out / "README.md").unlink(missing_ok=True)  # peft's empty model card: the lab writes card.md
    else:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))


def _chat_rows(rows: list[dict[str, Any]], chat: bool, where: str, model: str) -> list[dict[str, Any]]:
    """``rows`` in the form the study samples the stage in: with a chat template, text rows become one user and
    one assistant message (so training sees the template that ``divtrace run`` renders prompts with); without
    one, chat rows are refused."""
    if not chat:
        if any(is_conversational(row) for row in rows):
            raise DivtraceError(
                f"{where}: the rows are chat messages, but the tokenizer of {model} has no chat template (the study "
                "samples it on plain text): give 'prompt' with 'completion' text"
            )
        return rows
    converted = []
    for row in rows:
        if is_conversational(row):
            converted.append(row)
            continue
        prompt = row["prompt"]
        answers = {name: [{"role": "assistant", "content": row[name]}] for name in row if name != "prompt"}
        converted.append({"prompt": [{"role": "user", "content": prompt}], **answers})
    return converted


def _curve_point(entry: dict[str, Any]) -> dict[str, float]:
    point: dict[str, float] = {"step": int(entry["step"])}
    point.update({name: float(entry[name]) for name in _CURVE_KEYS if isinstance(entry.get(name), int | float)})
    return point


def _say_step(request: TrainRequest, step: str) -> None:
    if request.progress is not None:
        request.progress(ProgressEvent("train", request.stage.name, 0, None, "", step))


def _progress_callback(request: TrainRequest) -> Any:
    """A trainer callback that reports each optimizer step to ``request.progress``."""
    from transformers import TrainerCallback

    class _Steps(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if request.progress is not None:
                request.progress(
                    ProgressEvent("train", request.stage.name, int(state.global_step), int(state.max_steps), STEPS)
                )

    return _Steps()
