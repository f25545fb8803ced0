"""The data a lab stage makes (a recipe's ``data:`` of kind ``distill`` or ``pairs``): a JSON Lines file of training
rows and its sidecar, drawn through divtrace's own generation and verification.

- :class:`~divtrace.lab.data_specs.DistillData` (SFT): the teacher answers the prompts of a task; each non-empty
  response is a row ``{"prompt", "completion"}``.
- :class:`~divtrace.lab.data_specs.PairsData` (DPO): the stage's parent samples a verifiable task; the task's
  verifier judges each sample and :func:`verifier_pairs` pairs a prompt's correct samples (chosen) with its
  incorrect ones (rejected): rows ``{"prompt", "chosen", "rejected"}``.

A row's ``prompt`` is the task's prompt as the model saw it before any chat template (the record's ``prompt``: the
trainer applies the template); its texts are the samples' ``responses`` (chain of thought stripped), else their
``outputs``. Every sample is drawn at ``temperature`` alone (``top_p`` :data:`TOP_P`, no top-k or min-p), with the
task's stop strings (for prompts rendered without a chat template) and the spec's ``max_new_tokens``, sample ``k`` of
prompt ``p`` seeded with :func:`~divtrace.generate.params.sample_seed` (the spec's ``seed``, ``p``, ``k``).

What ``out_dir`` holds::

    samples/teacher/TASK/shard-*.parquet    (distill) divtrace's generation shards, resumed by its resume logic
    samples/parent/TASK/shard-*.parquet     (pairs)
    distill.jsonl, distill.meta.json        (distill) the rows and what made them
    pairs.jsonl, pairs.meta.json            (pairs)

The sidecar (``NAME.meta.json``, ``rows_path.with_suffix(".meta.json")``) holds the inputs (the spec, the model as
asked for, the task, its prompts' digest, the sampling), the model's ``model_ref`` and effective sampling as the
samples record them, every sample's seed, the counts, each prompt's kept samples or pairs, the shards it was made
from and the rows file's sha256. It is written last, so a made data set with its sidecar is complete; a call whose
inputs match a sidecar whose rows file is as recorded returns that file without loading any model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from divtrace.errors import DivtraceError
from divtrace.fingerprint import file_digest, fingerprint
from divtrace.generate.backends import check_installed, create_generator, validate_options
from divtrace.generate.backends.options import OpenAIOptions, TransformersOptions
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.protocol import Generator
from divtrace.generate.render_options import RenderOptions
from divtrace.generate.resume import ModelSource, ResumeMismatchError
from divtrace.generate.runner import generate_if_needed
from divtrace.io_atomic import write_atomic, write_json_atomic
from divtrace.lab.data_specs import DistillData, PairsData
from divtrace.progress import ProgressSink
from divtrace.samples import SampleRecord, read_samples
from divtrace.tasks import get_task, load_prompts
from divtrace.tasks.base import Task
from divtrace.verify import verifier_class
from divtrace.verify.pipeline import verifiable_task, verify_records

#: Bumped when the same inputs make other rows (a sidecar of another version is made again).
DATA_VERSION = 1
#: The nucleus mass every made data set is drawn with: 1.0, sampling at ``temperature`` alone.
TOP_P = 1.0
#: Prompts per stored generation shard (the unit an interrupted make resumes from).
SHARD_SIZE = 8
#: The checkpoint labels of the samples under ``out_dir/samples/``.
TEACHER = "teacher"
PARENT = "parent"
#: The backend the stage's parent is sampled on (the lab trains with transformers).
PARENT_BACKEND = "transformers"
#: The transformers backend option that loads an adapter on the parent's weights (see :func:`parent_options`).
ADAPTER_OPTION = "adapter"


def prepare_data(
    data: DistillData | PairsData,
    parent_model: str,
    parent_adapter: str | None,
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    progress: ProgressSink | None = None,
) -> Path:
    """Make the training rows of ``data`` under ``out_dir`` (created) and return their JSON Lines file.

    Contract:
    - :class:`DistillData`: ``data.teacher`` on ``data.backend`` with ``data.options`` (validated by the backend's
      options model, as :func:`~divtrace.generate.backends.create_generator` does) draws ``data.k`` samples for each
      of the first ``data.n`` prompts of the task ``data.prompts`` (default: the task's N); each non-empty response
      is one row ``{"prompt", "completion"}``, prompt by prompt in sample order (``distill.jsonl``). The parent is
      not used.
    - :class:`PairsData`: ``parent_model`` (with ``parent_adapter``, see :func:`parent_options`) on the transformers
      backend draws ``data.k`` samples for each of the first ``data.n`` prompts of the verifiable task ``data.task``;
      the task's verifier (:func:`~divtrace.verify.pipeline.verify_records`) judges each; a prompt's non-empty
      samples give the pairs :func:`verifier_pairs` says: rows ``{"prompt", "chosen", "rejected"}``, prompt by
      prompt (``pairs.jsonl``).
    - The samples are stored by divtrace's generation under ``out_dir/samples/``: an interrupted call, called again,
      draws only the shards not stored; shards drawn with other settings are refused
      (:class:`~divtrace.generate.resume.ResumeMismatchError`, naming the setting), never mixed in.
    - Deterministic: the same inputs on the same software and device give a byte-identical rows file (and
      sidecar), wherever ``out_dir`` is (seeds as :func:`~divtrace.generate.params.sample_seed` gives them).
    - The sidecar ``NAME.meta.json`` (see the module docstring) is written after the rows; when it exists, its
      inputs equal this call's and the rows file has the sha256 it records, the rows file is returned as it is,
      with no model loaded and nothing written.
    - ``data_dir``: where a task's data lies offline (``TASK.jsonl``/``.parquet``, as ``divtrace run --data-dir``);
      ``progress`` gets the generation's events (:func:`~divtrace.generate.runner.generate_samples`).

    Raises DivtraceError before loading any model for: bad backend options (naming the key), an unknown task, a
    non-verifiable task for pairs, a parent adapter while divtrace's backends cannot load one; ModelLoadError when a
    backend's package is missing. Raises DivtraceError, writing no rows (the samples stay stored), when the samples
    make no row: every response empty, or no prompt with both a correct and an incorrect sample.
    """
    out_dir = Path(out_dir)
    plan = _plan(data, parent_model, parent_adapter, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / f"{data.kind}.jsonl"
    meta_path = rows_path.with_suffix(".meta.json")
    inputs = plan.inputs(data)
    if _reusable(rows_path, meta_path, inputs):
        return rows_path
    job = GenerationJob(
        tuple(plan.prompts), plan.params, out_dir, plan.checkpoint, plan.task.name, RenderOptions(), SHARD_SIZE
    )
    records = _samples(plan, job, progress)
    if isinstance(data, DistillData):
        rows, per_prompt, counts = distill_rows(records)
    else:
        rows, per_prompt, counts = pair_rows(records, plan.task, data.pairs_per_prompt)
    if not rows:
        made = ", ".join(f"{name} {value}" for name, value in counts.items())
        raise DivtraceError(
            f"{data.kind} data made no training rows from {len(records)} prompts x {data.k} samples ({made}); "
            "ask for more prompts (n) or samples (k), or another temperature, in a new out_dir"
        )
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_atomic(rows_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    first = records[0]
    meta = {
        "inputs": inputs,
        "rows": {"file": rows_path.name, "sha256": file_digest(rows_path), "bytes": rows_path.stat().st_size},
        "counts": {
            "prompts": len(records),
            "samples": sum(len(r.outputs) for r in records),
            "rows": len(rows),
            **counts,
        },
        "model_ref": first.model_ref,
        "sampling": first.sampling,
        "seeds": {"seed": plan.params.seed, "samples": {r.prompt_id: r.sample_seeds for r in records}},
        "per_prompt": per_prompt,
        "task_origin": plan.origin,
        "samples": [
            {"file": path.relative_to(out_dir).as_posix(), "sha256": file_digest(path)}
            for path in (job.shard_path(index) for index in range(len(job.shard_ranges())))
        ],
    }
    write_json_atomic(meta, meta_path)
    return rows_path


def parent_options(adapter: str | None) -> TransformersOptions:
    """The transformers options the stage's parent is loaded with: the defaults, plus ``adapter`` (a PEFT adapter
    directory on the parent's weights) as the backend's :data:`ADAPTER_OPTION` option."""
    if adapter is None:
        return TransformersOptions()
    options = validate_options(PARENT_BACKEND, {ADAPTER_OPTION: adapter})
    assert isinstance(options, TransformersOptions)
    return options


def distill_rows(
    records: Sequence[SampleRecord],
) -> tuple[list[dict[str, str]], list[dict[str, Any]], dict[str, int]]:
    """SFT rows of ``records``: ``{"prompt": record.prompt, "completion": text}`` for each non-empty text of
    :meth:`~divtrace.samples.SampleRecord.scored_texts` (responses, else outputs), record by record in sample order.

    Returns (rows, per prompt ``{"prompt_id", "kept"}`` with the kept sample indices, counts: ``empty_dropped``
    texts that were empty or blank, ``truncated`` kept texts that hit the token cap).
    """
    rows: list[dict[str, str]] = []
    per_prompt: list[dict[str, Any]] = []
    empty = truncated = 0
    for record in records:
        texts = record.scored_texts()
        finish = record.finish_reasons or [None] * len(texts)
        kept = [index for index, text in enumerate(texts) if text.strip()]
        empty += len(texts) - len(kept)
        truncated += sum(finish[index] == "length" for index in kept)
        rows.extend({"prompt": record.prompt, "completion": texts[index]} for index in kept)
        per_prompt.append({"prompt_id": record.prompt_id, "kept": kept})
    return rows, per_prompt, {"empty_dropped": empty, "truncated": truncated}


def verifier_pairs(correct: Sequence[bool], pairs_per_prompt: int) -> list[tuple[int, int]]:
    """The (chosen, rejected) sample indices of one prompt whose samples' verdicts are ``correct``, at most
    ``pairs_per_prompt`` of them; none when no sample or every sample is correct.

    Correct sample ``C[i]`` (the i-th correct in sample order) is paired with incorrect ``W[j]``; the pairs come in
    the order of the shift ``(j - i) mod len(W)``, then ``i``: first the i-th correct with the i-th incorrect (sample
    order), then shifted by one, and so on. So the first pairs bring samples not used yet, and no combination comes
    twice; with ``pairs_per_prompt`` at most ``min(len(C), len(W))`` they are the sample-order zip of the two.
    """
    chosen = [index for index, ok in enumerate(correct) if ok]
    rejected = [index for index, ok in enumerate(correct) if not ok]
    if not chosen or not rejected:
        return []
    combos = sorted(
        ((i, j) for i in range(len(chosen)) for j in range(len(rejected))),
        key=lambda ij: ((ij[1] - ij[0]) % len(rejected), ij[0]),
    )
    return [(chosen[i], rejected[j]) for i, j in combos[:pairs_per_prompt]]


def pair_rows(
    records: Sequence[SampleRecord], task: Task, pairs_per_prompt: int
) -> tuple[list[dict[str, str]], list[dict[str, Any]], dict[str, int]]:
    """DPO rows of ``records`` (samples of the verifiable ``task``): each record's samples are verified with the
    task's verifier (:func:`~divtrace.verify.pipeline.verify_records`, on
    :meth:`~divtrace.samples.SampleRecord.scored_texts`); its non-empty ones are paired by :func:`verifier_pairs`:
    ``{"prompt": record.prompt, "chosen": correct text, "rejected": incorrect text}``, record by record.

    Returns (rows, per prompt ``{"prompt_id", "correct", "pairs"}`` with every sample's verdict and the pairs' sample
    indices, counts: ``correct`` and ``incorrect`` samples, ``empty_skipped`` empty or blank samples left out of
    pairing, ``prompts_without_pair``, of them ``prompts_all_correct`` and ``prompts_all_incorrect`` among the
    non-empty samples).
    """
    verdicts = verify_records(records, task=task).verdicts
    columns = verdicts[["prompt_id", "sample_index", "correct"]].itertuples(index=False)
    verdict = {(str(prompt_id), int(index)): bool(ok) for prompt_id, index, ok in columns}
    rows: list[dict[str, str]] = []
    per_prompt: list[dict[str, Any]] = []
    names = ("correct", "incorrect", "empty_skipped", "prompts_without_pair", "prompts_all_correct")
    counts = dict.fromkeys((*names, "prompts_all_incorrect"), 0)
    for record in records:
        texts = record.scored_texts()
        correct = [verdict[(record.prompt_id, index)] for index in range(len(texts))]
        usable = [index for index, text in enumerate(texts) if text.strip()]
        pairs = [(usable[a], usable[b]) for a, b in verifier_pairs([correct[i] for i in usable], pairs_per_prompt)]
        counts["correct"] += sum(correct)
        counts["incorrect"] += len(correct) - sum(correct)
        counts["empty_skipped"] += len(texts) - len(usable)
        if not pairs:
            counts["prompts_without_pair"] += 1
            usable_correct = [correct[i] for i in usable]
            counts["prompts_all_correct"] += bool(usable_correct) and all(usable_correct)
            counts["prompts_all_incorrect"] += not any(usable_correct)
        rows.extend({"prompt": record.prompt, "chosen": texts[c], "rejected": texts[r]} for c, r in pairs)
        per_prompt.append({"prompt_id": record.prompt_id, "correct": correct, "pairs": [list(p) for p in pairs]})
    return rows, per_prompt, counts


@dataclass(frozen=True)
class _Plan:
    """What a made data set is drawn from: the model, the task and its prompts, the sampling, the samples' label."""

    kind: Literal["distill", "pairs"]
    source: ModelSource
    adapter: str | None
    task: Task
    prompts: list[PromptItem]
    origin: str
    params: SamplingParams
    checkpoint: str

    def inputs(self, data: DistillData | PairsData) -> dict[str, Any]:
        """Everything the rows are made from, as JSON values (as a sidecar reads back): what a sidecar must hold for
        its rows to be reused."""
        source = self.source
        options = source.options
        verifier = self.task.verifier if self.kind == "pairs" else None
        inputs = {
            "data_version": DATA_VERSION,
            "spec": data.model_dump(mode="json"),
            "model": {
                "backend": source.backend,
                "model": source.model,
                "revision": source.revision,
                "options": options.model_dump(mode="json") if options is not None else {},
                "adapter": self.adapter,
                "identity": _model_identity(source),
            },
            "task": self.task.name,
            "verifier": None if verifier is None else {"name": verifier, "version": verifier_class(verifier).version},
            "prompts": fingerprint([[p.prompt_id, p.prompt, p.references] for p in self.prompts]),
            "sampling": self.params.as_record(),
            "render": "divtrace defaults (chat template when the model has one, no system prompt, native thinking)",
            "shard_size": SHARD_SIZE,
        }
        loaded: dict[str, Any] = json.loads(json.dumps(inputs))
        return loaded


def _plan(data: DistillData | PairsData, parent_model: str, adapter: str | None, data_dir: Path | None) -> _Plan:
    """Check ``data`` and load its task's prompts, before any model is loaded."""
    if isinstance(data, DistillData):
        check_installed(data.backend)
        options = validate_options(data.backend, data.options)
        revision = None if isinstance(options, OpenAIOptions) else options.revision
        source = ModelSource(data.backend, data.teacher, revision, options)
        task, label, adapter = get_task(data.prompts), TEACHER, None
    else:
        task = get_task(data.task)
        chosen, why_not = verifiable_task(task)
        if chosen is None:
            raise DivtraceError(f"pairs data needs a verifiable task: {why_not}")
        source = ModelSource(PARENT_BACKEND, parent_model, None, parent_options(adapter))
        label = PARENT
    prompts, origin = load_prompts(task, data_dir, data.n)
    if not prompts:
        raise DivtraceError(f"task {task.name} has no prompts ({origin})")
    params = SamplingParams(
        k=data.k,
        temperature=data.temperature,
        top_p=TOP_P,
        max_new_tokens=data.max_new_tokens,
        stop=task.stop,
        seed=data.seed,
    )
    return _Plan(data.kind, source, adapter, task, prompts, origin, params, label)


def _model_identity(source: ModelSource) -> dict[str, Any] | None:
    """The model's identity as far as it is known without loading it (a local directory's or a packaged file's
    digest, a hub id and revision; None for a served model), so retrained weights in the same place are new inputs."""
    if source.backend == "openai":
        return None
    from divtrace.generate.models import resolve_model

    return dict(resolve_model(source.model, source.revision, convert=False).identity)


def _reusable(rows_path: Path, meta_path: Path, inputs: dict[str, Any]) -> bool:
    """Whether the rows file and its sidecar were made from ``inputs`` and the rows file is as the sidecar records."""
    if not rows_path.is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(meta, dict) or meta.get("inputs") != inputs:
        return False
    recorded = meta.get("rows")
    return isinstance(recorded, dict) and recorded.get("sha256") == file_digest(rows_path)


def _samples(plan: _Plan, job: GenerationJob, progress: ProgressSink | None) -> list[SampleRecord]:
    """The samples of ``job``: drawn where a shard is not stored (the model loaded only then), then read back in
    prompt order."""
    source = plan.source

    def load() -> Generator:
        return create_generator(source.backend, source.model, source.options)

    try:
        generate_if_needed(load, job, source, progress)
    except ResumeMismatchError as err:
        samples = job.shard_path(0).parent
        raise ResumeMismatchError(
            f"{err}; for this made data: remove {samples} to draw its samples again, or give it another out_dir"
        ) from None
    paths = [job.shard_path(index) for index in range(len(job.shard_ranges()))]
    records = read_samples(paths).records
    if [r.prompt_id for r in records] != [p.prompt_id for p in job.prompts]:
        raise DivtraceError(f"the samples in {paths[0].parent} are not the prompts asked for; remove them")
    return records
