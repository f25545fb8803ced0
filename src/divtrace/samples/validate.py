"""Turn one raw record (a dict read from any sample file) into a validated :class:`SampleRecord`.

Every problem is reported as a :class:`~divtrace.errors.SampleFormatError` that names the file, the line (or
row) and the field, so that a user can fix the input without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from divtrace.errors import SampleFormatError
from divtrace.samples.schema import SampleRecord

MIN_OUTPUTS = 2
"""Per-input diversity compares the K outputs of one prompt with each other, so K must be at least 2."""

PER_OUTPUT_FIELDS = ("responses", "reasoning", "thinking_unclosed", "finish_reasons", "output_tokens", "sample_seeds")
"""Optional fields holding one item per output; when present they must be as long as ``outputs``."""


def _type_name(value: Any) -> str:
    """A user-facing name of ``value``'s JSON type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a field path: ``("outputs", 3)`` -> ``"outputs[3]"``.

    Integer parts become ``[i]``, string parts after the first become ``.key``; an empty location gives ``""``.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


def _check_prompt_id(raw: Mapping[str, Any], path: str | Path, line: int | None) -> str:
    if "prompt_id" not in raw or raw["prompt_id"] is None:
        raise SampleFormatError(path, line, "prompt_id", "missing (every record needs a prompt_id)")
    value = raw["prompt_id"]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SampleFormatError(path, line, "prompt_id", f"must be a string or an integer, got a {_type_name(value)}")
    if not value:
        raise SampleFormatError(path, line, "prompt_id", "must not be empty")
    return value


#: How to get K >= 2 samples per prompt out of each tool whose logs divtrace imports.
FEW_OUTPUTS_HINTS = {
    "lm-eval": "lm-eval logged one generation per document: run lm-eval with `repeats: K` (K >= 2) in the task's "
    "YAML config and sampling switched on, e.g. `--gen_kwargs do_sample=True,temperature=0.8` (temperature > 0)",
    "lighteval": "lighteval logged one generation per document (Doc.num_samples = 1): give the task a sampling "
    "metric that draws n >= 2 samples (e.g. `pass@k=1&n=K` or `maj@k=K`, which set num_samples) and a "
    "temperature > 0 in the model's generation_parameters",
}


def few_outputs_reason(count: int, source: str | None) -> str:
    """Why a record with ``count`` (< 2) outputs cannot be scored, and, for an imported log, how to fix the run
    in the source tool's own terms (``source``: ``"lm-eval"``, ``"lighteval"``; other sources get no hint)."""
    reason = f"has {count} output(s); per-input diversity needs K >= {MIN_OUTPUTS} outputs per prompt"
    hint = FEW_OUTPUTS_HINTS.get(source or "")
    return f"{reason}. {hint}" if hint is not None else reason


def _source(raw: Mapping[str, Any]) -> str | None:
    """The tool that wrote an imported record (``origin.format``, else ``sampling.source``), or None."""
    for key, inner in (("origin", "format"), ("sampling", "source")):
        value = raw.get(key)
        if isinstance(value, Mapping) and isinstance(value.get(inner), str):
            return str(value[inner])
    return None


def _check_outputs(raw: Mapping[str, Any], path: str | Path, line: int | None) -> list[str]:
    if "outputs" not in raw or raw["outputs"] is None:
        raise SampleFormatError(path, line, "outputs", "missing (the K raw outputs, a list of strings)")
    outputs = raw["outputs"]
    if not isinstance(outputs, list):
        raise SampleFormatError(path, line, "outputs", f"must be a list of strings, got a {_type_name(outputs)}")
    for i, item in enumerate(outputs):
        if not isinstance(item, str):
            raise SampleFormatError(
                path,
                line,
                f"outputs[{i}]",
                f"outputs must be a list of strings, but outputs[{i}] is a {_type_name(item)}",
            )
    if len(outputs) < MIN_OUTPUTS:
        raise SampleFormatError(path, line, "outputs", few_outputs_reason(len(outputs), _source(raw)))
    return outputs


def record_from_dict(
    raw: Mapping[str, Any],
    path: str | Path,
    line: int | None,
    defaults: Mapping[str, Any] | None = None,
) -> SampleRecord:
    """Validate one raw record and return it as a :class:`SampleRecord`.

    Contract:
        * ``raw`` is not modified. Keys of ``defaults`` (typically ``checkpoint`` and ``task``) fill in fields
          that are absent or null in ``raw``; a value present in ``raw`` always wins.
        * ``prompt_id`` must be a non-empty string; an integer is accepted and converted to its decimal string.
        * ``prompt`` must be a string; ``outputs`` a list of at least 2 strings.
        * ``responses``, ``reasoning``, ``thinking_unclosed``, ``finish_reasons``, ``output_tokens`` and
          ``sample_seeds``, when present and not null, must have exactly one item per output.
        * Everything else is type-checked by the pydantic model; unknown fields are kept.

    Raises:
        SampleFormatError: naming ``path``, ``line`` and the offending field (a path such as ``outputs[3]``).
    """
    if not isinstance(raw, Mapping):
        raise SampleFormatError(path, line, None, f"a record must be a JSON object, got a {_type_name(raw)}")
    data = dict(raw)
    for key, value in (defaults or {}).items():
        if data.get(key) is None and value is not None:
            data[key] = value

    data["prompt_id"] = _check_prompt_id(data, path, line)
    if "prompt" not in data or data["prompt"] is None:
        raise SampleFormatError(path, line, "prompt", "missing (every record needs the prompt text)")
    if not isinstance(data["prompt"], str):
        raise SampleFormatError(path, line, "prompt", f"must be a string, got a {_type_name(data['prompt'])}")
    outputs = _check_outputs(data, path, line)
    for name in PER_OUTPUT_FIELDS:
        value = data.get(name)
        if isinstance(value, list) and len(value) != len(outputs):
            raise SampleFormatError(
                path,
                line,
                name,
                f"has {len(value)} item(s) but outputs has {len(outputs)}; it needs one item per output",
            )

    try:
        return SampleRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = field_path(tuple(first["loc"])) or None
        reason = f"{first['msg']} (got a {_type_name(first.get('input'))})"
        if len(exc.errors()) > 1:
            reason += f"; and {len(exc.errors()) - 1} more problem(s) in this record"
        raise SampleFormatError(path, line, where, reason) from None
