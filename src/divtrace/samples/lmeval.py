"""Importer for lm-evaluation-harness per-sample logs (``--log_samples``).

lm-eval writes ``<output_path>/<sanitized model name>/samples_<task>_<timestamp>.jsonl`` (see
``lm_eval/loggers/evaluation_tracker.py``: ``save_results_samples``), where the timestamp is
``datetime.now().isoformat().replace(":", "-")``, e.g. ``2024-05-01T12-34-56.123456``. One line per
(document, filter), built in ``lm_eval/evaluator.py``::

    {"doc_id": 0, "doc": {...}, "target": "...",
     "arguments": {"gen_args_0": {"arg_0": "<context>", "arg_1": {"until": [...], "temperature": 1.0, ...}}},
     "resps": [["<gen 1>", ..., "<gen K>"]], "filtered_resps": [...], "filter": "none", "metrics": [...],
     "doc_hash": "...", "prompt_hash": "...", "target_hash": "...", "<metric>": value}

Older releases wrote ``"arguments": [["<context>", {gen_kwargs}]]`` (the request's args tuple as a list) and had
no ``filter``/hash fields. With ``repeats: K`` the K generations of one request are in ``resps[0]``; a task that
issues K requests of one generation each gives ``[["o1"], ["o2"], ...]``. Both are flattened into ``outputs``.
A task with several filters logs the same document once per filter with identical ``resps``; only the first
line is imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from divtrace.errors import SampleFormatError
from divtrace.samples.compressed import uncompressed_name
from divtrace.samples.jsonl import OnError, iter_jsonl_records

SOURCE = "lm-eval"
SAMPLES_FILE_RE = re.compile(
    r"^samples_(?P<task>.+)_(?P<timestamp>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.jsonl$"
)
_INDEX_RE = re.compile(r"(\d+)$")


def parse_samples_filename(name: str) -> tuple[str, str] | None:
    """Split an lm-eval samples file name into ``(task, timestamp)``; ``None`` if it is not one.

    ``samples_gsm8k_cot_zeroshot_2024-05-01T12-34-56.123456.jsonl`` -> ``("gsm8k_cot_zeroshot",
    "2024-05-01T12-34-56.123456")``. Task names may contain underscores; the timestamp is the last ``_`` part,
    as in lm-eval's own ``get_file_task_name``.
    """
    match = SAMPLES_FILE_RE.match(name)
    if match:
        return match.group("task"), match.group("timestamp")
    if name.startswith("samples_") and name.endswith(".jsonl") and name.count("_") >= 2:
        stem = name[: -len(".jsonl")]
        return stem[len("samples_") : stem.rfind("_")], stem[stem.rfind("_") + 1 :]
    return None


def is_lmeval_samples_file(path: str | Path) -> bool:
    """True when ``path``'s name looks like an lm-eval samples file (``samples_*.jsonl``)."""
    name = Path(path).name
    return name.startswith("samples_") and name.endswith(".jsonl")


def _sorted_by_index(mapping: Mapping[str, Any]) -> list[Any]:
    def index(key: str) -> int:
        match = _INDEX_RE.search(key)
        return int(match.group(1)) if match else 0

    return [mapping[key] for key in sorted(mapping, key=index)]


def normalize_arguments(arguments: Any, path: str | Path, line: int) -> list[list[Any]]:
    """Return the per-request argument lists of one lm-eval line, whichever of the two layouts it uses.

    ``[[ctx, gen_kwargs], ...]`` (old) and ``{"gen_args_0": {"arg_0": ctx, "arg_1": gen_kwargs}, ...}`` (new)
    both give ``[[ctx, gen_kwargs], ...]``, in request order. Raises :class:`SampleFormatError` otherwise.
    """
    if isinstance(arguments, Mapping):
        requests = _sorted_by_index(arguments)
        out = []
        for request in requests:
            if not isinstance(request, Mapping):
                raise SampleFormatError(path, line, "arguments", "each gen_args_<i> entry must be an object")
            out.append(_sorted_by_index(request))
        return out
    if isinstance(arguments, list):
        out = []
        for request in arguments:
            if not isinstance(request, list):
                raise SampleFormatError(path, line, "arguments", "each request's arguments must be a list")
            out.append(request)
        return out
    raise SampleFormatError(
        path, line, "arguments", "expected [[context, gen_kwargs], ...] or {'gen_args_0': {'arg_0': ...}}"
    )


def _flatten_resps(resps: Any, path: str | Path, line: int) -> list[str]:
    if not isinstance(resps, list):
        raise SampleFormatError(path, line, "resps", "must be a list (one list of responses per request)")
    outputs: list[str] = []
    for i, request in enumerate(resps):
        items = request if isinstance(request, list) else [request]
        for j, item in enumerate(items):
            if not isinstance(item, str):
                raise SampleFormatError(
                    path,
                    line,
                    f"resps[{i}][{j}]",
                    "is not text; only generative (generate_until) tasks have outputs to score "
                    "(loglikelihood tasks log scores, not generations)",
                )
            outputs.append(item)
    return outputs


def lmeval_line_to_record(
    row: Mapping[str, Any],
    path: str | Path,
    line: int,
    *,
    checkpoint: str | None,
    task: str | None,
) -> dict[str, Any]:
    """Convert one lm-eval samples line into a raw divtrace record (validated later by ``record_from_dict``).

    Contract: ``prompt_id`` = ``str(doc_id)``; ``prompt`` = the context string of the first request (every
    request must share it); ``outputs`` = all responses in ``resps``, flattened in order; ``sampling`` =
    ``{"source": "lm-eval", "requested": gen_kwargs}`` (what was asked for, not necessarily what ran);
    ``references`` = ``{"target": ..., "doc": ...}``; ``origin`` keeps the file name, line and lm-eval's hashes.
    Raises :class:`SampleFormatError` naming the lm-eval field that is missing or malformed.
    """
    if "doc_id" not in row or row["doc_id"] is None:
        raise SampleFormatError(path, line, "doc_id", "missing (not an lm-eval samples line?)")
    doc_id = row["doc_id"]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (int, str)):
        raise SampleFormatError(path, line, "doc_id", "must be an integer or a string")
    if "arguments" not in row:
        raise SampleFormatError(path, line, "arguments", "missing (lm-eval logs the request's context there)")
    requests = normalize_arguments(row["arguments"], path, line)
    if not requests or not requests[0]:
        raise SampleFormatError(path, line, "arguments", "is empty")
    context = requests[0][0]
    if not isinstance(context, str):
        raise SampleFormatError(path, line, "arguments", "the first argument (the context) is not a string")
    if any(not req or req[0] != context for req in requests[1:]):
        raise SampleFormatError(
            path,
            line,
            "arguments",
            "the requests of this document have different contexts; they are not K samples of one prompt",
        )
    gen_kwargs = requests[0][1] if len(requests[0]) > 1 and isinstance(requests[0][1], Mapping) else None
    if "resps" not in row:
        raise SampleFormatError(path, line, "resps", "missing (lm-eval logs the generations there)")
    outputs = _flatten_resps(row["resps"], path, line)

    origin: dict[str, Any] = {"format": SOURCE, "file": Path(path).name, "line": line}
    for key in ("doc_hash", "prompt_hash", "target_hash", "filter"):
        if key in row:
            origin[key] = row[key]
    return {
        "prompt_id": str(doc_id),
        "prompt": context,
        "outputs": outputs,
        "checkpoint": checkpoint,
        "task": task,
        "sampling": {"source": SOURCE, "requested": dict(gen_kwargs) if gen_kwargs is not None else None},
        "references": {"target": row.get("target"), "doc": row.get("doc")},
        "origin": origin,
    }


def iter_lmeval_records(
    path: str | Path,
    *,
    checkpoint: str | None = None,
    task: str | None = None,
    on_error: OnError | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, raw_record)`` for each document of an lm-eval ``samples_<task>_<ts>.jsonl`` file.

    Contract:
        * ``checkpoint`` defaults to the parent directory's name (lm-eval writes one directory per model);
          ``task`` defaults to the task parsed from the file name (a ``.gz`` suffix aside). Given values override
          both.
        * A document logged again under another filter with the same ``resps`` is skipped; with different
          ``resps`` it is an error naming both lines.
        * Per-line errors go to ``on_error`` when given (the line is skipped), else are raised; file-level
          errors (unreadable file, not UTF-8) always raise. See :func:`iter_jsonl_records`.
    """
    file = Path(path)
    if checkpoint is None:
        checkpoint = file.absolute().parent.name or file.stem
    if task is None:
        parsed = parse_samples_filename(uncompressed_name(file.name))
        task = parsed[0] if parsed else None
    seen: dict[str, tuple[int, list[str]]] = {}
    for line, row in iter_jsonl_records(file, on_error=on_error):
        try:
            record = lmeval_line_to_record(row, file, line, checkpoint=checkpoint, task=task)
            first = seen.get(record["prompt_id"])
            if first is not None:
                if first[1] == record["outputs"]:
                    continue  # the same generations, logged again for another filter
                raise SampleFormatError(
                    file,
                    line,
                    "doc_id",
                    f"doc_id {record['prompt_id']} was already logged at line {first[0]} with different resps",
                )
        except SampleFormatError as error:
            if on_error is None:
                raise
            on_error(error)
            continue
        seen[record["prompt_id"]] = (line, record["outputs"])
        yield line, record
