"""The Verifier interface: check sampled outputs against a task's reference data, one verdict per output."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from divtrace import plugins

#: How a prompt's K samples make one majority verdict: ``"vote"``, self-consistency over the extracted answers
#: (:func:`divtrace.verify.aggregate.majority_vote`), or ``"more_than_half"``, more than half of the
#: samples are correct (for verifiers whose outputs have no answer to vote with, such as TruthfulQA's free text).
MajorityRule = Literal["vote", "more_than_half"]
MAJORITY_RULES: tuple[MajorityRule, ...] = ("vote", "more_than_half")


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one output.

    Attributes:
        correct: whether the output is correct for the task.
        extracted: the answer taken from the output (a number, a LaTeX expression, a code block...), or None
            when nothing could be extracted.
        detail: a short reason, for people reading the verdicts ("no final answer", "timeout after 10 s",
            "AssertionError", "strict: 2/3 instructions followed"...); None when there is nothing to add.
        extra: verifier-specific facts (for IFEval: ``strict``/``loose`` results per instruction).
    """

    correct: bool
    extracted: str | None
    detail: str | None = None
    extra: dict[str, Any] | None = None


#: Reference key the verify pipeline adds for a verifier with :attr:`Verifier.reads_prompt_form`: ``"completion"``
#: when the sample's prompt was rendered without a chat template, ``"chat"`` with one; absent when unknown.
PROMPT_FORM_KEY = "prompt_form"


class Verifier(ABC):
    """Checks outputs against references; never raises because of what an output contains.

    A hostile or malformed output is an incorrect verdict, not an exception: only a broken *reference* (bad task
    data) may raise, with a message saying which field is wrong.
    """

    #: Registry name (``gsm8k``, ``math``, ``humaneval``...).
    name: ClassVar[str]
    #: How the per-prompt majority verdict is decided for this verifier's tasks (see :data:`MajorityRule`).
    majority_rule: ClassVar[MajorityRule] = "vote"
    #: True when where the answer sits depends on the prompt's form (a base model's completion vs a chat reply):
    #: the pipeline then adds :data:`PROMPT_FORM_KEY` to each reference whose sample says how it was rendered.
    reads_prompt_form: ClassVar[bool] = False
    #: Bumped whenever the verifier's rules change, so that a run redoes the verdicts it gave before.
    version: ClassVar[int] = 1

    @abstractmethod
    def verify_batch(self, outputs: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per ``(outputs[i], references[i])``, in order.

        Batched so that verifiers can work in parallel (code runs in several sandboxes at once). ``references[i]``
        is the task's gold data for the prompt that ``outputs[i]`` answers (see each verifier for its keys).
        """

    def verify(self, output: str, reference: dict[str, Any]) -> Verdict:
        """The verdict for one output."""
        return self.verify_batch([output], [reference])[0]


def register_verifier(cls: type[Verifier]) -> type[Verifier]:
    """Class decorator: make ``cls`` available as ``create_verifier(cls.name)`` (in :mod:`divtrace.plugins`); names
    must be unique."""
    if cls.majority_rule not in MAJORITY_RULES:
        raise ValueError(
            f"verifier {cls.name!r}: majority_rule must be one of {MAJORITY_RULES}, not {cls.majority_rule!r}"
        )
    plugins.register("verifier", cls.name, cls)
    return cls


def verifier_names() -> list[str]:
    """Registered verifier names, sorted (imports no verifier module)."""
    return sorted(plugins.names("verifier"))


def verifier_class(name: str) -> type[Verifier]:
    """The verifier class registered as ``name`` (imported on first use).

    Raises :class:`~divtrace.plugins.UnknownPlugin` (a DivtraceError and a KeyError) listing the known names.
    """
    return plugins.load_class("verifier", name, Verifier)


def create_verifier(name: str, **options: Any) -> Verifier:
    """A new verifier by registry name (options go to its constructor); UnknownPlugin lists the known names."""
    return verifier_class(name)(**options)


def majority_rule(name: str) -> MajorityRule:
    """The majority rule of the verifier registered as ``name``; UnknownPlugin lists the known names."""
    return verifier_class(name).majority_rule
