"""Samples generated elsewhere (lm-eval, lighteval, plain JSONL/Parquet) turned into a run directory.

``divtrace analyze`` imports the samples into the same layout ``divtrace run`` writes (RUN/samples/<checkpoint>/
<task>/shard-00000.parquet, plus a frozen ``study.yaml`` describing the lineage), so verification, scoring, the
analysis and the report are the very same stages, resumable and skipping done work, and ``divtrace report RUN``
works on either kind of run directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.fingerprint import files_fingerprint, fingerprint
from divtrace.generate.runner import write_shard
from divtrace.runs.layout import RunLayout, run_name_problems
from divtrace.runs.lock import hold_run_directory
from divtrace.runs.markers import mark_done
from divtrace.runs.outputs import record_outputs, unit_state
from divtrace.samples import SampleRecord, read_samples
from divtrace.samples.common_k import MixedK
from divtrace.score.metric_spec import MetricChoice, as_spec
from divtrace.score.settings import EmbedderSettings, NLISettings
from divtrace.study.ownership import check_run_directory
from divtrace.study.spec import IMPORTED_MODEL, UNKNOWN, CheckpointSpec, RecordedSampling, Study, TaskSpec
from divtrace.tasks.names import resolve_task

_NODE = re.compile(r"^\s*(?P<name>[^:>\s][^:>]*?)\s*(?::\s*(?P<stage>[^:>\s]+)\s*)?$")


@dataclass(frozen=True)
class SampleSource:
    """One input of ``divtrace analyze``: a file or directory, and the checkpoint label its records get.

    ``checkpoint`` (from ``NAME=PATH`` on the command line) replaces whatever the records or the importer say;
    None keeps the records' own label (a ``checkpoint`` column, or what the lm-eval/lighteval importer infers).
    """

    path: Path
    checkpoint: str | None = None

    @classmethod
    def parse(cls, text: str) -> SampleSource:
        """``PATH`` or ``NAME=PATH`` (only when PATH exists and ``NAME=PATH`` as a whole does not)."""
        name, sep, rest = text.partition("=")
        if sep and name and rest and not Path(text).exists():
            return cls(Path(rest), name)
        return cls(Path(text))


@dataclass
class ImportReport:
    """What an import found: records per (checkpoint, task), and the problems skipped (``--skip-invalid``)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_lineage(specs: Sequence[str], variants: Sequence[str] = ()) -> list[CheckpointSpec]:
    """Checkpoints from ``--lineage`` chains and ``--variant`` pairs.

    A chain is ``base>sft>dpo>rl``; a checkpoint may carry its stage label as ``name:stage`` (default: ``base``
    for a chain's first checkpoint, its own name otherwise). Several chains share checkpoints by name, so
    ``base>sft>dpo`` and ``base>rlzero:rl-zero`` make a tree. A variant ``NAME=OF`` declares NAME the same
    weights as OF sampled with thinking suppressed (the thinking ablation).

    Raises:
        DivtraceError: a malformed chain or variant, a stage given twice differently, a checkpoint with two
            parents, or names that cannot each have their own directory in a run directory (two that become the
            same directory name, one too long; see :func:`~divtrace.runs.layout.run_name_problems`).
    """
    nodes: dict[str, CheckpointSpec] = {}
    for spec in specs:
        parts = spec.split(">")
        parent: str | None = None
        for position, part in enumerate(parts):
            match = _NODE.match(part)
            if match is None:
                raise DivtraceError(
                    f"--lineage {spec!r}: {part!r} is not a checkpoint name (expected NAME or NAME:STAGE)"
                )
            name = match["name"]
            stage = match["stage"] or ("base" if position == 0 else name)
            known = nodes.get(name)
            if known is None:
                nodes[name] = CheckpointSpec(name=name, model=IMPORTED_MODEL, stage=stage, parent=parent)
            else:
                if known.parent != parent:
                    raise DivtraceError(
                        f"--lineage {spec!r}: checkpoint {name!r} has parent {parent!r} here and {known.parent!r} "
                        "in an earlier chain"
                    )
                if match["stage"] and match["stage"] != known.stage:
                    raise DivtraceError(f"--lineage {spec!r}: checkpoint {name!r} has two stage labels")
            parent = name
    for variant in variants:
        name, sep, source = (part.strip() for part in variant.partition("="))
        if not sep or not name or not source:
            raise DivtraceError(f"--variant {variant!r}: expected NAME=OF (NAME sampled with thinking suppressed)")
        if source not in nodes:
            raise DivtraceError(f"--variant {variant!r}: {source!r} is not a checkpoint of the lineage")
        if name in nodes:
            raise DivtraceError(f"--variant {variant!r}: {name!r} is already a checkpoint of the lineage")
        nodes[name] = CheckpointSpec(
            name=name, model=IMPORTED_MODEL, stage=nodes[source].stage, variant_of=source, thinking="suppressed"
        )
    if not nodes:
        raise DivtraceError("give the lineage: --lineage base>sft>dpo (repeatable), or --study FILE")
    problems = run_name_problems(nodes, "checkpoint")
    if problems:
        raise DivtraceError("--lineage: " + "; ".join(problems))
    return list(nodes.values())


def read_sources(
    sources: Sequence[SampleSource],
    *,
    skip_invalid: bool = False,
    strip_thinking: bool = True,
    fmt: str = "auto",
) -> tuple[list[SampleRecord], list[str]]:
    """Every record of ``sources`` (checkpoint labels applied) and the problems skipped.

    ``strip_thinking``: chain-of-thought removed from the outputs as the study did, unclosed thinking flagged
    (see :func:`~divtrace.samples.read_samples`); False keeps the records as stored. ``fmt``: the input format
    of every source (see :data:`~divtrace.samples.reader.FORMATS`; ``auto`` tells it per file from its content).

    Raises:
        SampleFormatError: bad input (naming file, line and field) unless ``skip_invalid``.
        DivtraceError: the same (checkpoint, task, prompt_id) in two inputs.
    """
    records: list[SampleRecord] = []
    problems: list[str] = []
    seen: dict[tuple[str, str, str], Path] = {}
    for source in sources:
        if not source.path.exists():
            raise DivtraceError(f"{source.path}: no such file or directory")
        read = read_samples(source.path, fmt=fmt, skip_invalid=skip_invalid, strip_thinking=strip_thinking)
        problems += [str(problem) for problem in read.problems]
        for record in read.records:
            if source.checkpoint is not None:
                record = record.model_copy(update={"checkpoint": source.checkpoint})
            key = (record.checkpoint or "", record.task or "", record.prompt_id)
            if key in seen:
                raise DivtraceError(
                    f"{source.path}: checkpoint {key[0]!r}, task {key[1]!r}, prompt {key[2]!r} is also in {seen[key]}; "
                    "label the inputs as NAME=PATH if they are different checkpoints"
                )
            seen[key] = source.path
            records.append(record)
    return records, problems


def imported_study(
    checkpoints: Sequence[CheckpointSpec],
    records: Sequence[SampleRecord],
    *,
    name: str = "imported",
    metrics: Sequence[MetricChoice] | None = None,
    embedder: str | EmbedderSettings | None = None,
    nli_model: str | NLISettings | None = None,
    data_dir: str | None = None,
    task_map: Mapping[str, str] | None = None,
    mixed_k: Sequence[MixedK] = (),
) -> Study:
    """The study that describes imported samples: the lineage, the tasks found, the metrics to compute.

    ``sampling`` is what the records carry (:func:`recorded_sampling`), not the study defaults; its ``mixed_k``
    lists the cells of ``mixed_k`` (what :func:`~divtrace.samples.common_k.to_common_k` cut) of the lineage's
    checkpoints. Each task keeps
    its label as logged (``gsm8k|0``, ``gsm8k_cot_zeroshot``...); ``verify_as`` names the divtrace task that
    verifies it (:func:`~divtrace.tasks.names.resolve_task`, ``task_map`` first), None when there is none (the
    verify stage then says why).

    Raises:
        DivtraceError: a checkpoint of the lineage has no samples (the message lists those that do); ``task_map``
            names a task divtrace does not know; the samples' task labels cannot each have their own files in a
            run directory (see :func:`~divtrace.runs.layout.run_name_problems`).
    """
    found = sorted({record.checkpoint or "" for record in records})
    names = {c.name for c in checkpoints}
    missing = [c.name for c in checkpoints if c.name not in found]
    if missing:
        raise DivtraceError(
            f"no samples for checkpoint(s) {missing} of the lineage; the samples have checkpoints {found} "
            "(label an input as NAME=PATH to set its checkpoint)"
        )
    tasks = sorted({record.task or "" for record in records})
    problems = run_name_problems(tasks, "task")
    if problems:
        raise DivtraceError(
            "the task labels of the samples: " + "; ".join(problems) + " (a record's task field, or the task "
            "lm-eval or lighteval logged)"
        )
    return Study(
        name=name,
        description=f"samples imported from elsewhere: {len(records)} prompts, checkpoints {', '.join(found)}",
        checkpoints=list(checkpoints),
        tasks=[TaskSpec(name=task, verify_as=_verify_as(task, task_map)) for task in tasks],
        sampling=recorded_sampling(records, [cell for cell in mixed_k if cell.checkpoint in names]),
        metrics=list(metrics) if metrics else Study.model_fields["metrics"].get_default(call_default_factory=True),
        embedder=embedder,
        nli_model=nli_model,
        data_dir=data_dir,
    )


def _verify_as(label: str, task_map: Mapping[str, str] | None) -> str | None:
    """The divtrace task that verifies ``label``; None when it is that task itself or there is none."""
    found = resolve_task(label, task_map).task
    return None if found == label else found


def _agreed(values: Sequence[Any]) -> Any:
    """The one value ``values`` share; ``"unknown"`` when none is known; ``"mixed: a, b[, unknown]"`` otherwise."""
    known = sorted({value for value in values if value is not None}, key=str)
    if not known:
        return UNKNOWN
    if len(known) == 1 and len(known) == len(set(values)):
        return known[0]
    text = ", ".join(str(value) for value in known)
    return f"mixed: {text}" + (", unknown" if any(value is None for value in values) else "")


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _record_sampling(record: SampleRecord) -> dict[str, Any]:
    """One record's sampling: source, temperature, top_p, max_new_tokens (None when not logged) and whether the
    values are what was requested from the tool (lm-eval's ``gen_kwargs``, lighteval's ``Doc``)."""
    sampling = record.sampling if isinstance(record.sampling, dict) else {}
    requested = sampling.get("requested")
    if "requested" in sampling or sampling.get("source") in ("lm-eval", "lighteval"):
        asked = requested if isinstance(requested, dict) else {}
        temperature = _number(asked.get("temperature"))
        if temperature is None and asked.get("do_sample") is False:
            temperature = 0.0  # greedy decoding
        return {
            "source": str(sampling.get("source") or "unknown"),
            "temperature": temperature,
            "top_p": _number(asked.get("top_p")),
            "max_new_tokens": _number(asked.get("max_gen_toks", asked.get("generation_size", asked.get("max_tokens")))),
            "requested": True,
        }
    return {
        "source": "divtrace" if sampling else "unknown",
        "temperature": _number(sampling.get("temperature")),
        "top_p": _number(sampling.get("top_p")),
        "max_new_tokens": _number(sampling.get("max_new_tokens")),
        "requested": False,
    }


def recorded_sampling(records: Sequence[SampleRecord], mixed_k: Sequence[MixedK] = ()) -> RecordedSampling:
    """The sampling the records carry, for an imported study's ``sampling`` (and its report).

    Contract: ``k`` from the number of outputs per prompt; ``temperature``, ``top_p``, ``max_new_tokens`` from
    each record's ``sampling`` (divtrace's own keys; lm-eval's ``requested`` gen_kwargs ``temperature``,
    ``top_p``, ``max_gen_toks``, with ``do_sample: false`` read as temperature 0; lighteval's ``Doc``
    ``generation_size``; lighteval logs no temperature). A setting every record shares is that value; one no
    record logged is ``"unknown"``; otherwise ``"mixed: ..."`` lists the values (and ``unknown`` when some records
    lack it). ``source`` names the tool(s); ``requested`` is True when any value is what a tool was asked for.
    ``mixed_k``: the cells cut to a common K before (:func:`~divtrace.samples.common_k.to_common_k`).
    """
    per_record = [_record_sampling(record) for record in records]
    sources = sorted({item["source"] for item in per_record})
    return RecordedSampling(
        source=sources[0] if len(sources) == 1 else f"mixed: {', '.join(sources)}" if sources else UNKNOWN,
        k=_agreed([len(record.outputs) for record in records]),
        temperature=_agreed([item["temperature"] for item in per_record]),
        top_p=_agreed([item["top_p"] for item in per_record]),
        max_new_tokens=_agreed([item["max_new_tokens"] for item in per_record]),
        requested=any(item["requested"] for item in per_record),
        mixed_k=tuple(mixed_k),
    )


def import_samples(
    study: Study, records: Sequence[SampleRecord], layout: RunLayout, *, strip_thinking: bool = True
) -> ImportReport:
    """Write the records of the study's checkpoints into ``layout`` (one shard per checkpoint and task).

    A (checkpoint, task) whose stored shard already holds exactly these records (read with the same
    ``strip_thinking``) is left alone, so importing the same files again changes nothing downstream. Records of
    checkpoints outside the study are not imported. ``strip_thinking`` is recorded in each generation marker, and
    the later stages read the shard with it (see :meth:`divtrace.runs.layout.RunLayout.read_samples`).

    The import holds the run directory (:func:`~divtrace.runs.lock.hold_run_directory`; at no cost when the caller
    holds it already, as :func:`divtrace.analyze` does), and a directory of another study, or one made by
    ``divtrace run``, is refused before anything in it is written
    (:func:`~divtrace.study.ownership.check_run_directory`).
    """
    with hold_run_directory(layout.root, "divtrace.analyze", wait_flag="wait=True"):
        check_run_directory(layout, study)
        return _import(study, records, layout, strip_thinking)


def _import(study: Study, records: Sequence[SampleRecord], layout: RunLayout, strip_thinking: bool) -> ImportReport:
    report = ImportReport()
    wanted = {checkpoint.name for checkpoint in study.checkpoints}
    groups: dict[tuple[str, str], list[SampleRecord]] = {}
    for record in records:
        if record.checkpoint in wanted:
            groups.setdefault((record.checkpoint or "", record.task or ""), []).append(record)
    layout.freeze_study(study.to_yaml())
    for (checkpoint, task), group in sorted(groups.items()):
        group.sort(key=lambda record: record.prompt_id)
        key = fingerprint(
            {"records": [record.model_dump(mode="json") for record in group], "strip_thinking": strip_thinking}
        )
        marker = layout.generation_marker(checkpoint, task)
        path = layout.shard_file(checkpoint, task, 0)
        if not unit_state(layout.root, marker, key, (path,)).done:  # a shard missing or damaged is imported again
            for stale in layout.sample_files(checkpoint, task):
                stale.unlink()
            write_shard(group, layout.root, checkpoint, task, 0)
            mark_done(
                marker,
                key,
                record_outputs(layout.root, (path,), marker),
                prompts=len(group),
                imported=True,
                shard=files_fingerprint([path]),
                strip_thinking=strip_thinking,
            )
        report.counts[(checkpoint, task)] = len(group)
    return report


@dataclass(frozen=True)
class ImportChoices:
    """What ``divtrace analyze`` analyses imported samples with: the lineage and the scoring settings."""

    checkpoints: list[CheckpointSpec]
    metrics: list[MetricChoice] | None
    embedder: str | EmbedderSettings | None
    nli_model: str | NLISettings | None


def import_choices(
    base_study: Study | None,
    lineage: Sequence[str],
    variants: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    embedder: str | None = None,
    nli_model: str | None = None,
) -> ImportChoices:
    """The lineage and scoring settings of an import, from a study file (its checkpoints, marked as imported, its
    metrics and models) or from ``--lineage``/``--variant`` chains; explicit ``metrics``/``embedder``/``nli_model``
    win, and an NLI model adds the ``nli`` metric.

    Raises:
        DivtraceError: both a study and a lineage were given, or neither names a checkpoint.
    """
    if base_study is not None and lineage:
        raise DivtraceError("give the lineage either with --study or with --lineage, not both")
    if base_study is not None:
        checkpoints = [c.model_copy(update={"model": IMPORTED_MODEL}) for c in base_study.checkpoints]
    else:
        checkpoints = parse_lineage(lineage, variants)
    names: list[MetricChoice] | None = (
        list(metrics) if metrics else (list(base_study.metrics) if base_study is not None else None)
    )
    if nli_model and names is not None and "nli" not in [as_spec(m).name for m in names]:
        names.append("nli")
    elif nli_model and names is None:
        names = ["ead", "sbert", "vendi", "nli"]
    return ImportChoices(
        checkpoints=checkpoints,
        metrics=names,
        embedder=embedder or (base_study.embedder if base_study is not None else None),
        nli_model=nli_model or (base_study.nli_model if base_study is not None else None),
    )
