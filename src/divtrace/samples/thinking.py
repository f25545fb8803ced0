"""Chain-of-thought removal from raw outputs: the one rule every output entering divtrace goes through.

The rule is the published study's (FIDELITY.md, "Chain-of-thought stripping"):

1. every ``<think>…</think>`` block is removed (the first ``<think>``, up to the first ``</think>`` after it,
   repeated while such a pair is left);
2. then, when a ``</think>`` is left and no ``<think>`` is (the chat template opened the block in the prompt),
   everything up to and including that first ``</think>`` is dropped;
3. the result is stripped of surrounding whitespace, when the output held a thinking tag.

Step 3 differs from the study on purpose: the reference strips *every* output, which turns a base model's HumanEval
continuation ``"    return a + b\n"`` into ``"return a + b"``, a SyntaxError once appended to the prompt, so every
base-model continuation fails. An output without any thinking tag is therefore left exactly as generated. Metrics
are blind to surrounding whitespace (EAD splits on whitespace, the sentence encoders' tokenizers drop it), so this
changes verdicts of code continuations only (docs/fidelity.md).

A thinking block that never closes (an opening ``<think>`` without a later ``</think>``, or no ``</think>`` at all
while the rendered prompt opened a block) is left in the response as the study left it: the text is *not*
emptied. Such an output is *unclosed*: the generation most likely hit the token cap while thinking. It is
flagged (``SampleRecord.thinking_unclosed``) and counted per checkpoint and task (``unclosed_thinking``), so a
too-small cap shows up instead of silently scoring as collapsed or wrong answers.

Generation records (:func:`divtrace.generate.runner.generate_samples`) and every importer (JSONL, Parquet,
lm-eval, lighteval; see :func:`divtrace.samples.read_samples`) go through :func:`split_thinking`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from divtrace.samples.schema import SampleRecord

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ThinkingSplit(NamedTuple):
    """One output split by :func:`split_thinking`."""

    response: str
    """What metrics and verifiers see: the output with its thinking removed and surrounding whitespace stripped (an
    output without any thinking tag is returned unchanged)."""
    reasoning: str | None
    """The removed thinking (blocks joined by a blank line, each stripped); None when nothing was removed."""
    unclosed: bool
    """The thinking never closed (see the module docstring); the response then keeps that text."""


def prompt_opens_thinking(rendered_prompt: str) -> bool:
    """True when the prompt ends inside an open thinking block (the template wrote ``<think>`` for the model)."""
    last_open = rendered_prompt.rfind(THINK_OPEN)
    return last_open >= 0 and rendered_prompt.rfind(THINK_CLOSE) < last_open


def split_thinking(output: str, opened_in_prompt: bool = False) -> ThinkingSplit:
    """Split one raw output into the response metrics see, the removed reasoning, and whether thinking was unclosed.

    ``opened_in_prompt`` (the rendered prompt ended inside a ``<think>`` block, see :func:`prompt_opens_thinking`)
    changes only ``unclosed``: an output of such a prompt without any ``</think>`` never closed its thinking. The
    response never depends on it, as in the study.

    Examples::

        "<think>a</think> B"            -> ("B", "a", False)
        "<think>a</think>B<think>c</think>D" -> ("BD", "a\\n\\nc", False)
        "a</think>B"                    -> ("B", "a", False)       # the prompt opened the block
        "<think>still thinking"         -> ("<think>still thinking", None, True)
        "still thinking" (opened_in_prompt=True) -> ("still thinking", None, True)
        "    return x\n"               -> ("    return x\n", None, False)   # no tag: unchanged
    """
    text = output
    removed: list[str] = []
    while True:
        start = text.find(THINK_OPEN)
        end = text.find(THINK_CLOSE, start + len(THINK_OPEN)) if start >= 0 else -1
        if end < 0:
            break
        removed.append(text[start + len(THINK_OPEN) : end])
        text = text[:start] + text[end + len(THINK_CLOSE) :]
    still_open = THINK_OPEN in text  # an opening tag with no closing tag after it
    if not still_open:
        close = text.find(THINK_CLOSE)
        if close >= 0:
            removed.insert(0, text[:close])
            text = text[close + len(THINK_CLOSE) :]
    unclosed = still_open or (opened_in_prompt and THINK_CLOSE not in output)
    reasoning = "\n\n".join(part.strip() for part in removed if part.strip()) if removed else None
    tagged = THINK_OPEN in output or THINK_CLOSE in output
    return ThinkingSplit(text.strip() if tagged else text, reasoning, unclosed)


def record_prompt_opens_thinking(record: SampleRecord) -> bool:
    """Whether the model input of ``record`` opened a thinking block: its ``rendered_prompt`` (divtrace's own
    records) when it has one, else its ``prompt`` (lm-eval's context and lighteval's input are the rendered
    model input)."""
    rendered = record.rendered_prompt
    return prompt_opens_thinking(rendered if rendered is not None else record.prompt)


def split_record_thinking(record: SampleRecord, *, strip: bool = True) -> SampleRecord:
    """``record`` with its outputs passed through :func:`split_thinking` (a new record; the input is unchanged).

    With ``strip``: ``thinking_unclosed`` is filled when absent; ``responses`` when absent (a record that already
    carries responses keeps them); ``reasoning`` when absent and some output had thinking removed. Without
    ``strip`` the record is returned as it is (outputs scored as stored, unclosed thinking not checked).
    """
    if not strip:
        return record
    if record.thinking_unclosed is not None and record.responses is not None:
        return record
    opened = record_prompt_opens_thinking(record)
    splits = [split_thinking(output, opened) for output in record.outputs]
    update: dict[str, object] = {}
    if record.thinking_unclosed is None:
        update["thinking_unclosed"] = [s.unclosed for s in splits]
    if record.responses is None:
        update["responses"] = [s.response for s in splits]
    if record.reasoning is None and any(s.reasoning is not None for s in splits):
        update["reasoning"] = [s.reasoning for s in splits]
    return record.model_copy(update=update)


def unclosed_count(record: SampleRecord) -> int | None:
    """How many of ``record``'s outputs never closed their thinking; None when the record does not say (a record
    read with stripping off, or built without the field)."""
    flags = record.thinking_unclosed
    return None if flags is None else int(sum(bool(flag) for flag in flags))


def unclosed_total(records: Sequence[SampleRecord]) -> int | None:
    """The unclosed outputs of ``records`` summed; None when no record says (records without the field count 0
    when others have it)."""
    counts = [unclosed_count(record) for record in records]
    known = [count for count in counts if count is not None]
    return sum(known) if known else None
