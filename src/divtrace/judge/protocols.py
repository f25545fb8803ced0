"""The study's three judge protocols: what each sends to the judge for one output, and how it reads the answer.

- ``kirk_summary`` (TL;DR, CNN/DailyMail, XSum): the output against the dataset's reference summary, with Kirk et
  al. (ICLR 2024)'s ranking prompt. Which summary is shown first is decided by the SHA-256 of
  ``source \\n||\\n output \\n||\\n reference`` (last hex digit odd: the reference first), so each position is
  equally likely over a data set. Value: 1 win, 0.5 tie, 0 loss.
- ``arena_hard_creative`` (WritingPrompts): the output against a baseline checkpoint's output for the same prompt
  (the lineage's base by default), with Arena-Hard's judge, in both orders. Value of an order: Arena-Hard's scale
  (``[[A>>B]]`` 1, ``[[A>B]]`` .75, ``[[A=B]]`` .5, ``[[B>A]]`` .25, ``[[B>>A]]`` 0) from the output's side.
- ``wb_score`` (WildBench): WB-Score (Lin et al., ICLR 2025), the item's checklist in one user message; value: the
  1-10 score.

Every judged text is the output with its chain of thought removed (:func:`divtrace.samples.thinking.split_thinking`,
the study's ``_strip_cot``) and surrounding whitespace stripped. As in the study, an empty output is not sent to a
pairwise judge (nor paired with an empty baseline output); WB-Score judges it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from divtrace.errors import DivtraceError
from divtrace.judge.parsing import ARENA_SCORES, parse_arena_verdict, parse_kirk_ranking, parse_wb_score
from divtrace.judge.requests import JudgeRequest, JudgeSettings, request_key
from divtrace.judge.templates import JudgeTemplate, load_template

#: The protocol the study judged each task with.
STUDY_PROTOCOLS: dict[str, str] = {
    "tldr": "kirk_summary",
    "cnn_dailymail": "kirk_summary",
    "xsum": "kirk_summary",
    "writingprompts": "arena_hard_creative",
    "wildbench": "wb_score",
}
#: The reference field holding a summarisation task's gold summary (its dataset's column).
REFERENCE_SUMMARY_FIELDS: dict[str, str] = {"tldr": "summary", "cnn_dailymail": "highlights", "xsum": "summary"}
#: Fields tried, in order, for the reference summary of another task.
GENERIC_SUMMARY_FIELDS = ("summary", "highlights", "reference")
#: What Kirk et al.'s prompt calls the summarised text, per task (the study's ``TASK_DOC_TYPE``).
DOC_TYPES: dict[str, str] = {"tldr": "forum post", "cnn_dailymail": "news article", "xsum": "news article"}
DEFAULT_DOC_TYPE = "document"
#: What the study wrote for a WildBench item with an empty checklist.
NO_CHECKLIST = "- No specific checklist provided."
#: The marker before the source text in each summarisation prompt, and the one after it.
SOURCE_MARKERS: dict[str, str] = {"tldr": "POST: ", "cnn_dailymail": "ARTICLE: ", "xsum": "ARTICLE: "}
SUMMARY_CUE = "TL;DR:"


class JudgeInputError(DivtraceError):
    """A record lacks what its protocol needs (a reference summary, a checklist); the message names the record."""


@dataclass(frozen=True)
class JudgedOutput:
    """One output to judge and what its protocol compares it with.

    Attributes:
        checkpoint, task, prompt_id, sample_index: which output (``sample_index``: its index among the K).
        prompt: the task prompt as the record holds it.
        text: the output as judged (chain of thought removed, whitespace stripped).
        references: the record's ``references`` (the dataset row's gold fields), or None.
        where: how to name the record in an error (its file and line, or its run-directory unit).
        baseline: the checkpoint compared with (pairwise against a baseline), else ``""``.
        baseline_text: that checkpoint's output for the same prompt and sample index, as judged.
    """

    checkpoint: str
    task: str
    prompt_id: str
    sample_index: int
    prompt: str
    text: str
    references: Mapping[str, Any] | None
    where: str
    baseline: str = ""
    baseline_text: str | None = None

    def named(self) -> str:
        """The output in words, for errors: ``checkpoint sft, task tldr, prompt 17 (samples/...)``."""
        return f"checkpoint {self.checkpoint}, task {self.task}, prompt {self.prompt_id} ({self.where})"


@dataclass(frozen=True)
class Judgment:
    """A judge's answer read by its protocol: the verdict label (``win``/``tie``/``loss``, an Arena-Hard label, a
    score as text) and its value from the judged output's side; both None when the answer is unparseable."""

    verdict: str | None
    value: float | None


class JudgeProtocol(ABC):
    """A judge protocol (see the module documentation)."""

    name: ClassVar[str]
    #: What its value is, for tables: ``win rate vs reference``, ``win rate vs baseline``, ``WB-Score (1-10)``.
    value_kind: ClassVar[str]
    #: True when an output is compared with a baseline checkpoint's output (the baseline itself is not judged).
    needs_baseline: ClassVar[bool] = False

    @property
    def template(self) -> JudgeTemplate:
        """The protocol's published prompt."""
        return load_template(self.name)

    def settings(self, judge_model: str) -> JudgeSettings:
        """The judge's sampling as the study set it for this protocol (temperature 0; its max_tokens)."""
        return JudgeSettings(judge_model, self.template.temperature, self.template.max_tokens)

    def request(self, output: JudgedOutput, judge_model: str, order: str, fields: Mapping[str, str]) -> JudgeRequest:
        """The request judging ``output`` with the template filled with ``fields``, shown in ``order``."""
        settings = self.settings(judge_model)
        messages = self.template.messages(fields)
        return JudgeRequest(
            key=request_key(self.name, self.template.digest, settings, messages),
            messages=messages,
            settings=settings,
            checkpoint=output.checkpoint,
            task=output.task,
            prompt_id=output.prompt_id,
            sample_index=output.sample_index,
            protocol=self.name,
            order=order,
            baseline=output.baseline,
        )

    @abstractmethod
    def requests(self, output: JudgedOutput, judge_model: str) -> list[JudgeRequest]:
        """The judge calls for ``output`` (none when the study would not send it, e.g. an empty output to a pairwise
        judge). Raises JudgeInputError naming the record when it lacks what the protocol needs."""

    @abstractmethod
    def read(self, order: str, text: str) -> Judgment:
        """The judgment in the answer ``text`` to a request shown in ``order`` (never raises)."""


def should_swap(source: str, output: str, reference: str) -> bool:
    """The study's position rule: True (show the reference first) when the last hex digit of the SHA-256 of
    ``source \\n||\\n output \\n||\\n reference`` (UTF-8) is odd."""
    payload = f"{source}\n||\n{output}\n||\n{reference}"
    return int(hashlib.sha256(payload.encode("utf-8")).hexdigest()[-1], 16) % 2 == 1


def summary_source(prompt: str, task: str) -> str:
    """The summarised text inside a summarisation prompt, as the study extracts it: after the task's marker
    (``POST: `` for TL;DR, ``ARTICLE: `` for CNN/DailyMail and XSum; for another task ``POST: `` or ``ARTICLE: ``
    when the prompt holds one) up to the last ``\\nTL;DR:`` (or a trailing ``TL;DR:``), stripped. A prompt without
    a marker is the source as a whole."""
    marker = SOURCE_MARKERS.get(task) or next((m for m in ("POST: ", "ARTICLE: ") if m in prompt), None)
    body = prompt
    if marker is not None:
        start = prompt.find(marker)
        if start != -1:
            body = prompt[start + len(marker) :]
    cue = body.rfind("\n" + SUMMARY_CUE)
    if cue != -1:
        body = body[:cue]
    else:
        body = body.rstrip()
        if body.endswith(SUMMARY_CUE):
            body = body[: -len(SUMMARY_CUE)].rstrip()
    return body.strip()


def reference_summary(output: JudgedOutput) -> str:
    """The gold summary in ``output``'s references (``summary`` for TL;DR and XSum, ``highlights`` for
    CNN/DailyMail; for another task the first of ``summary``, ``highlights``, ``reference``), as text, stripped (a
    list's first item, as the study read ``choices[0]``). Raises JudgeInputError naming the record when absent."""
    fields = (REFERENCE_SUMMARY_FIELDS[output.task],) if output.task in REFERENCE_SUMMARY_FIELDS else None
    references = output.references or {}
    for name in fields or GENERIC_SUMMARY_FIELDS:
        if name in references and references[name] is not None:
            value = references[name]
            if isinstance(value, list | tuple):
                value = value[0] if value else ""
            return str(value).strip()
    wanted = " or ".join(fields or GENERIC_SUMMARY_FIELDS)
    raise JudgeInputError(
        f"{output.named()}: no reference summary (references.{wanted}) to judge the output against; "
        "samples of a summarisation task must carry the dataset's reference summary in `references` "
        "(divtrace's own generation stores it; for imported samples add it to each record)"
    )


def checklist_text(output: JudgedOutput) -> str:
    """The WildBench checklist of ``output`` as the study showed it: one ``- item`` line per non-blank question (a
    list; a string is split on ``"; "``, as the study's Parquet files held it), or :data:`NO_CHECKLIST` when it is
    empty. Raises JudgeInputError naming the record when ``references.checklist`` is absent."""
    references = output.references or {}
    if "checklist" not in references or references["checklist"] is None:
        raise JudgeInputError(
            f"{output.named()}: no checklist (references.checklist) for WB-Score; WildBench samples must carry the "
            "item's checklist (a list of questions) in `references`"
        )
    value = references["checklist"]
    items = value.strip().split("; ") if isinstance(value, str) else [str(item) for item in value]
    lines = [f"- {item}" for item in items if item.strip()]
    return "\n".join(lines) if lines else NO_CHECKLIST


class KirkSummary(JudgeProtocol):
    """Pairwise against the reference summary (Kirk et al., ICLR 2024); the study's summarisation quality."""

    name = "kirk_summary"
    value_kind = "win rate vs reference"

    def requests(self, output: JudgedOutput, judge_model: str) -> list[JudgeRequest]:
        """One call, the two summaries ordered by :func:`should_swap`; none when the output or the source is empty
        (the study sent none)."""
        reference = reference_summary(output)
        source = summary_source(output.prompt, output.task)
        if not output.text or not reference or not source:
            return []
        swap = should_swap(source, output.text, reference)
        first, second = (reference, output.text) if swap else (output.text, reference)
        fields = {
            "doc_type": DOC_TYPES.get(output.task, DEFAULT_DOC_TYPE),
            "source": source,
            "summary_a": first,
            "summary_b": second,
        }
        return [self.request(output, judge_model, "reference_first" if swap else "candidate_first", fields)]

    def read(self, order: str, text: str) -> Judgment:
        """``model_1``'s ranking turned to the output's side (``model_1`` is the reference when it was shown first)."""
        verdict: str | None = parse_kirk_ranking(text)
        if verdict is None:
            return Judgment(None, None)
        if order == "reference_first":
            verdict = {"win": "loss", "loss": "win", "tie": "tie"}[verdict]
        return Judgment(verdict, {"win": 1.0, "tie": 0.5, "loss": 0.0}[verdict])


class ArenaHardCreative(JudgeProtocol):
    """Pairwise against a baseline checkpoint's output, both orders (Arena-Hard-Auto); the study's WritingPrompts
    quality."""

    name = "arena_hard_creative"
    value_kind = "win rate vs baseline"
    needs_baseline = True

    def requests(self, output: JudgedOutput, judge_model: str) -> list[JudgeRequest]:
        """Two calls, the output as assistant A then as assistant B; none when either output is empty or the
        baseline has no output of this index (the study judged only pairs of non-empty outputs)."""
        if not output.text or not output.baseline_text:
            return []
        question = output.prompt.strip()
        first = {"question": question, "answer_a": output.text, "answer_b": output.baseline_text}
        second = {"question": question, "answer_a": output.baseline_text, "answer_b": output.text}
        return [
            self.request(output, judge_model, "candidate_first", first),
            self.request(output, judge_model, "baseline_first", second),
        ]

    def read(self, order: str, text: str) -> Judgment:
        """The verdict label and its value from the output's side (1 - A's value when the baseline was A)."""
        label = parse_arena_verdict(text)
        if label is None:
            return Judgment(None, None)
        value = ARENA_SCORES[label]
        return Judgment(label, 1.0 - value if order == "baseline_first" else value)


class WBScore(JudgeProtocol):
    """WB-Score with the item's checklist (Lin et al., ICLR 2025); the study's WildBench quality."""

    name = "wb_score"
    value_kind = "WB-Score (1-10)"

    def requests(self, output: JudgedOutput, judge_model: str) -> list[JudgeRequest]:
        """One call (an empty output is judged too, as in the study)."""
        fields = {"user_query": output.prompt, "model_output": output.text, "checklist": checklist_text(output)}
        return [self.request(output, judge_model, "single", fields)]

    def read(self, order: str, text: str) -> Judgment:
        """The 1-10 score."""
        score = parse_wb_score(text)
        return Judgment(None, None) if score is None else Judgment(str(score), float(score))


PROTOCOLS: dict[str, JudgeProtocol] = {p.name: p for p in (KirkSummary(), ArenaHardCreative(), WBScore())}


def get_protocol(name: str) -> JudgeProtocol:
    """The protocol called ``name``; DivtraceError listing the known ones otherwise."""
    if name not in PROTOCOLS:
        raise DivtraceError(f"unknown judge protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
