"""Importer for lighteval details files (``--save-details``).

lighteval writes ``<output_dir>/details/<model_name>/<timestamp>/details_<task>_<timestamp>.parquet``
(``src/lighteval/logging/evaluation_tracker.py``: ``save_details``), one row per document, from
``Dataset.from_list([asdict(detail) ...])`` with the columns sorted. Two row layouts exist
(``src/lighteval/logging/info_loggers.py``, ``DetailsLogger.Detail``):

* current: ``doc`` (the ``Doc`` dataclass as a struct: ``query``, ``choices``, ``gold_index``, ``id``,
  ``task_name``, ``full_prompt``, ``specific``, ``generation_size``, ``do_sample``, ``stop_sequences``,
  ``num_samples``, ...), ``model_response`` (``ModelResponse``: ``input``, ``text`` -- one string per sample --,
  ``text_post_processed``, ``reasonings``, ``output_tokens``, ``logprobs``, ...) and ``metric`` (a struct of
  scores);
* older: flat columns ``example``, ``instruction``, ``full_prompt``, ``predictions``, ``gold``, ``choices``,
  ``gold_index``, ``metrics``, ``specifics``, ``input_tokens``, ``cont_tokens``, ``truncated``, ``padded``, ...
  Some releases of that era cast every cell to ``str`` before saving, so a list may arrive as its Python repr
  (``"['a', 'b']"``); such cells are parsed back.

The older layout has no document id: the 0-based row number is used as ``prompt_id``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from divtrace.errors import SampleFormatError
from divtrace.samples.jsonl import OnError
from divtrace.samples.thinking import split_thinking

SOURCE = "lighteval"
_TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"
DETAILS_FILE_RE = re.compile(rf"^details_(?P<task>.+?)_(?P<timestamp>{_TIMESTAMP})\.parquet$")
_TIMESTAMP_DIR_RE = re.compile(rf"^{_TIMESTAMP}$")
NEW_LAYOUT = frozenset({"doc", "model_response"})
OLD_LAYOUT = frozenset({"predictions"})
_REQUESTED_DOC_FIELDS = ("generation_size", "do_sample", "stop_sequences", "num_samples", "use_logits")
_BATCH_ROWS = 1024


def parse_details_filename(name: str) -> tuple[str, str] | None:
    """Split a lighteval details file name into ``(task, timestamp)``; ``None`` if it is not one.

    ``details_lighteval|gsm8k|0_2025-06-01T10-00-00.123456.parquet`` -> ``("lighteval|gsm8k|0",
    "2025-06-01T10-00-00.123456")`` (the same pattern lighteval's own ``recreate_metadata_card`` uses).
    """
    match = DETAILS_FILE_RE.match(name)
    return (match.group("task"), match.group("timestamp")) if match else None


def is_lighteval_details_file(path: str | Path) -> bool:
    """True when ``path``'s name looks like a lighteval details file (``details_*.parquet``)."""
    name = Path(path).name
    return name.startswith("details_") and name.endswith(".parquet")


def default_checkpoint(path: str | Path) -> str:
    """The model directory of a details file: the parent, or the grandparent when the parent is a timestamp."""
    parent = Path(path).absolute().parent
    if _TIMESTAMP_DIR_RE.match(parent.name) and parent.parent.name:
        return parent.parent.name
    return parent.name or Path(path).stem


def detect_layout(columns: list[str], path: str | Path) -> str:
    """Return ``"current"`` or ``"older"`` for a details file's columns, else raise naming the columns found."""
    names = set(columns)
    if names >= NEW_LAYOUT:
        return "current"
    if names >= OLD_LAYOUT and ({"full_prompt", "example"} & names):
        return "older"
    raise SampleFormatError(
        path,
        None,
        None,
        f"unrecognised lighteval details layout; columns found: {sorted(names)}; expected 'doc' and "
        "'model_response' (current lighteval) or 'predictions' with 'full_prompt'/'example' (older lighteval)",
    )


def _decode(value: Any) -> Any:
    """Parse a cell that an older lighteval saved as ``str(value)`` (JSON or a Python literal) back."""
    if isinstance(value, str) and value[:1] in "[{(":
        try:
            return json.loads(value)
        except ValueError:
            pass
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
    return value


def _text_list(value: Any, path: str | Path, line: int, field: str) -> list[str]:
    value = _decode(value)
    if not isinstance(value, (list, tuple)):
        raise SampleFormatError(path, line, field, f"must be a list of generations, got {type(value).__name__}")
    out: list[str] = []
    for i, item in enumerate(value):
        items = item if isinstance(item, (list, tuple)) else [item]
        for item_j in items:
            if not isinstance(item_j, str):
                raise SampleFormatError(
                    path,
                    line,
                    f"{field}[{i}]",
                    "is not text; only generative tasks have outputs to score "
                    "(loglikelihood tasks log scores, not generations)",
                )
            out.append(item_j)
    return out


def _golds(choices: Any, gold_index: Any) -> list[Any] | None:
    indices = gold_index if isinstance(gold_index, list) else [gold_index]
    if not isinstance(choices, list) or not all(isinstance(i, int) for i in indices):
        return None
    if not all(0 <= i < len(choices) for i in indices):
        return None
    return [choices[i] for i in indices]


def _current_row(
    row: Mapping[str, Any], path: str | Path, line: int, checkpoint: str, task: str | None, strip_thinking: bool
) -> dict[str, Any]:
    doc = _decode(row.get("doc"))
    response = _decode(row.get("model_response"))
    if not isinstance(doc, Mapping):
        raise SampleFormatError(path, line, "doc", "must be a struct (lighteval's Doc)")
    if not isinstance(response, Mapping):
        raise SampleFormatError(path, line, "model_response", "must be a struct (lighteval's ModelResponse)")
    texts = response.get("text")
    if not texts:
        raise SampleFormatError(
            path,
            line,
            "model_response.text",
            "is empty; only generative tasks have outputs to score (loglikelihood tasks log scores)",
        )
    outputs = _text_list(texts, path, line, "model_response.text")

    prompt = response.get("input")
    if isinstance(prompt, list):
        prompt = json.dumps(prompt, ensure_ascii=False)  # chat messages, as sent to the model
    if not isinstance(prompt, str) or not prompt:
        prompt = doc.get("full_prompt") or doc.get("query")
    doc_id = doc.get("id")
    prompt_id = str(doc_id) if doc_id not in (None, "") else str(line - 1)

    post = response.get("text_post_processed")
    post = list(post) if isinstance(post, list) and len(post) == len(outputs) else None
    # The study stripped lighteval's final text (the post-processed one when logged) by its rule again.
    if strip_thinking and (post is None or all(isinstance(text, str) for text in post)):
        post = [split_thinking(text).response for text in (post if post is not None else outputs)]
    reasonings = response.get("reasonings")
    tokens = response.get("output_tokens")
    record: dict[str, Any] = {
        "prompt_id": prompt_id,
        "prompt": prompt,
        "outputs": outputs,
        "checkpoint": checkpoint,
        "task": task or doc.get("task_name") or None,
        "responses": post,
        "reasoning": (
            list(reasonings)
            if isinstance(reasonings, list)
            and len(reasonings) == len(outputs)
            and any(r is not None for r in reasonings)
            else None
        ),
        "output_tokens": (
            [len(t) for t in tokens]
            if isinstance(tokens, list) and len(tokens) == len(outputs) and all(isinstance(t, list) for t in tokens)
            else None
        ),
        "sampling": {
            "source": SOURCE,
            "requested": {key: doc[key] for key in _REQUESTED_DOC_FIELDS if key in doc},
        },
        "references": {
            "query": doc.get("query"),
            "choices": doc.get("choices"),
            "gold_index": doc.get("gold_index"),
            "golds": _golds(doc.get("choices"), doc.get("gold_index")),
            "specific": doc.get("specific"),
        },
        "origin": {"format": SOURCE, "file": Path(path).name, "line": line, "metric": _decode(row.get("metric"))},
    }
    return record


def _older_row(
    row: Mapping[str, Any], path: str | Path, line: int, checkpoint: str, task: str | None, strip_thinking: bool
) -> dict[str, Any]:
    outputs = _text_list(row.get("predictions"), path, line, "predictions")
    prompt = row.get("full_prompt") or row.get("example")
    return {
        "prompt_id": str(line - 1),
        "prompt": prompt,
        "outputs": outputs,
        "checkpoint": checkpoint,
        "task": task,
        "sampling": {"source": SOURCE, "requested": None},
        "references": {
            "query": row.get("example"),
            "gold": _decode(row.get("gold")),
            "choices": _decode(row.get("choices")),
            "gold_index": _decode(row.get("gold_index")),
            "specifics": _decode(row.get("specifics")),
        },
        "origin": {"format": SOURCE, "file": Path(path).name, "line": line, "metric": _decode(row.get("metrics"))},
    }


def iter_lighteval_records(
    path: str | Path,
    *,
    checkpoint: str | None = None,
    task: str | None = None,
    on_error: OnError | None = None,
    strip_thinking: bool = True,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, raw_record)`` for each row of a lighteval ``details_<task>_<ts>.parquet`` file.

    Contract:
        * Row numbers are 1-based. Both layouts described in the module docstring are read; any other set of
          columns raises :class:`SampleFormatError` naming the file and the columns found.
        * ``checkpoint`` defaults to the model directory (see :func:`default_checkpoint`), ``task`` to the task in
          the file name (then ``doc.task_name``); given values override both.
        * ``prompt`` is the model input when logged, else ``doc.full_prompt``/``full_prompt``, else the query;
          ``sampling`` = ``{"source": "lighteval", "requested": <generation fields of the Doc>}``; ``references``
          keeps the gold data; ``origin`` keeps the file name, row and per-sample metrics.
        * ``responses``: with ``strip_thinking`` (default), lighteval's final text (``text_post_processed`` when
          logged, else ``text``) passed through :func:`~divtrace.samples.thinking.split_thinking`, as the study
          did (lighteval removes only complete ``<think>…</think>`` pairs, not a lone ``</think>``); without it,
          ``text_post_processed`` as logged (None when absent). The older layout logs no post-processed text.
        * Per-row errors go to ``on_error`` when given (the row is skipped), else are raised; an unreadable file
          always raises.
    """
    file = Path(path)
    try:
        parquet = pq.ParquetFile(file)
    except (OSError, pa.ArrowException) as exc:
        raise SampleFormatError(file, None, None, f"not a readable Parquet file: {exc}") from None
    layout = detect_layout(parquet.schema_arrow.names, file)
    convert = _current_row if layout == "current" else _older_row
    if checkpoint is None:
        checkpoint = default_checkpoint(file)
    if task is None:
        parsed = parse_details_filename(file.name)
        task = parsed[0] if parsed else None
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                try:
                    record = convert(row, file, number, checkpoint, task, strip_thinking)
                except SampleFormatError as error:
                    if on_error is None:
                        raise
                    on_error(error)
                    continue
                yield number, record
    except pa.ArrowException as exc:
        raise SampleFormatError(file, number + 1, None, f"unreadable Parquet data: {exc}") from None
